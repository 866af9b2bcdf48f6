"""Serving: prediction tables, explanations, the micro-batcher and the web service."""
