"""The engine's network faces: the msgspec RPC server and the OpenAI-compatible HTTP API."""
