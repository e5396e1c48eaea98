"""The building blocks of a tensor-parallel Llama-family decoder."""
