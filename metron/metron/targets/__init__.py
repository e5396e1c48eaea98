"""Targets: what metron sends requests to. `base.Target` is the interface; `openai` speaks to any
OpenAI-compatible HTTP server."""
