"""Monitoring: the prediction log, drift statistics and the drift report."""
