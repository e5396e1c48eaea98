"""Vidur: simulate LLM serving deployments on the shared Rust scheduler."""
