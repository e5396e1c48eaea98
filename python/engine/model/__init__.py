"""Llama-family decoders (Llama 2/3, Mistral, Qwen2) from Hugging Face model directories, split
across tensor-parallel ranks."""

from engine.model.config import ModelConfig, load_model_config
from engine.model.loader import load_model, resolve_dtype
from engine.model.parallel import TensorParallel

__all__ = ["ModelConfig", "TensorParallel", "load_model", "load_model_config", "resolve_dtype"]
