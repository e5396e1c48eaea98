"""Engine process: the serving loop (`EngineCore`) and what it owns: the Rust scheduler, each
request's stream, detokenization, the tokenizer and the metrics. No PyTorch here."""
