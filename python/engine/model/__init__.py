"""Llama-family decoders (Llama 2/3, Mistral, Qwen2) from Hugging Face model directories, split
across tensor-parallel ranks. `config` is torch-free, so the engine process can read a model's
shape without importing torch; everything else runs in the workers."""
