"""Plain messages that cross a process boundary (msgspec structs, no PyTorch): the client
protocol, the engine-to-worker steps and their frames, and the sampling parameters."""
