"""Training runs: `train(cfg)`, ensemble bundles, the int8 copy judged on validation."""
