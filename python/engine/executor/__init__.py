"""Engine-core process: the handle on the model worker processes (start, size the KV cache, send
steps, notice a dead rank). No PyTorch here; the workers import it."""
