"""Engine-core process: the serving loop (`EngineCore`) and what it owns: the Rust scheduler, the
per-request slot arrays, the iteration log, and the handle on the model workers. It talks to the
front-end in one message per step (`engine.wire.core_messages`). No PyTorch here."""
