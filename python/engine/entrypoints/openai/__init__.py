"""Engine process: the OpenAI-compatible HTTP API (Hypercorn, Starlette) in vLLM's dialect."""
