"""Evaluation: metrics with intervals, calibration, the operating point and its re-tuning,
site adaptation, the shift suite, the label audit, comparisons and reports."""
