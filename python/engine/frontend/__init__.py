"""Front-end process (with `engine.entrypoints`): the handle on the engine core
(`EngineClient`), each request's stream, detokenization, the tokenizer and the metrics. No
PyTorch here."""
