"""Llama-family decoders (Llama 2/3, Mistral, Qwen2) from Hugging Face model directories, split
across tensor-parallel ranks (their torch-free config reader is `engine.model_config`)."""
