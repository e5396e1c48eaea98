"""Front-end process: `python -m engine` (the CLI), the server that wires it together, the
OpenAI-compatible HTTP API, the msgspec RPC server and prompt tokenization for the servers."""
