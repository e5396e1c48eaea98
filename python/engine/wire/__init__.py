"""Plain messages that cross a process boundary (msgspec structs, no PyTorch): the client
protocol, the front-end-to-core messages, the core-to-worker steps and their frames, and the
sampling parameters."""
