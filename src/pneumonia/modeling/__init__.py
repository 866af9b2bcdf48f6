"""Modeling: the model registry, the Lightning module and its data, weight averaging,
ensembles, ONNX export, bundle loading, running a network (inference) and the
out-of-distribution guard it carries."""
