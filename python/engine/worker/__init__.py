"""Model worker processes (one per rank): PyTorch lives here. `worker_main.run_worker` is the
process body; it holds a `ModelRunner` (the model, the paged KV cache, attention backends,
sampling) and applies the engine's steps."""
