"""Inference without PyTorch: bundles loaded, run on ONNX Runtime, guarded, answered."""
