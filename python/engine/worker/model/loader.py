"""Builds the decoder for one tensor-parallel rank and fills it from a model directory's
safetensors checkpoint (one file, or shards listed in `model.safetensors.index.json`).

Each rank reads only its slice of each tensor: rows of q/k/v/gate/up and of the embedding and LM
head, columns of o/down; norms are replicated. Every parameter must be found in the checkpoint,
and every checkpoint tensor must have a place in the model.
"""

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from safetensors import safe_open

from engine.worker.attention import AttentionBackend
from engine.model_config import ModelConfig
from engine.worker.model.layers.linear import ColumnParallelLinear
from engine.worker.model.layers.weights import CheckpointTensor, copy_exact
from engine.worker.model.llama import LlamaForCausalLM
from engine.worker.model.parallel import PipelineStage, TensorParallel
from engine.wire.runner_config import DTYPE_ALIASES

INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"
# GPUs of a lower compute capability (before Ampere) have no bfloat16 arithmetic.
BFLOAT16_MIN_CAPABILITY = (8, 0)


def resolve_dtype(requested: str, config: ModelConfig, device: torch.device) -> torch.dtype:
    """`auto`: see `auto_dtype_name`."""
    if requested == "auto":
        capability = torch.cuda.get_device_capability(device) if device.type == "cuda" else None
        name = auto_dtype_name(config.torch_dtype, capability)
    elif requested in DTYPE_ALIASES:
        name = DTYPE_ALIASES[requested]
    else:
        raise ValueError(f"unknown dtype {requested!r}: expected 'auto' or one of {sorted(DTYPE_ALIASES)}")
    dtype: torch.dtype = getattr(torch, name)
    return dtype


def auto_dtype_name(checkpoint_dtype: str | None, capability: tuple[int, int] | None) -> str:
    """float32 on the CPU (`capability` None); on a GPU the checkpoint's dtype (bfloat16 when it
    names none), but float16 for bfloat16 on a GPU without bfloat16 (compute capability < 8.0)."""
    if capability is None:
        return "float32"
    name = checkpoint_dtype or "bfloat16"
    if name == "bfloat16" and tuple(capability) < BFLOAT16_MIN_CAPABILITY:
        return "float16"
    return name


def checkpoint_files(model_dir: Path) -> list[Path]:
    index_path = model_dir / INDEX_FILE
    if index_path.is_file():
        try:
            weight_map = json.loads(index_path.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise ValueError(f"{index_path} is not a safetensors index (needs a 'weight_map'): {error}") from None
        files = [model_dir / name for name in sorted(set(weight_map.values()))]
        missing = [str(path.name) for path in files if not path.is_file()]
        if missing:
            raise ValueError(f"{index_path} lists shards that do not exist: {missing}")
        return files
    if (model_dir / SINGLE_FILE).is_file():
        return [model_dir / SINGLE_FILE]
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise ValueError(f"{model_dir} holds no *.safetensors weights (other formats are not supported)")
    return files


@runtime_checkable
class LoadsWeights(Protocol):
    """A layer that copies its own slice of checkpoint tensors (the parallel layers)."""

    def load_weight(self, param_name: str, source: CheckpointTensor, shard_id: int | None) -> None: ...


class SafetensorsTensor:
    """A `CheckpointTensor` read lazily from an open safetensors file."""

    def __init__(self, name: str, lazy_slice: Any) -> None:
        self.name = name
        self._slice = lazy_slice
        self._shape = tuple(lazy_slice.get_shape())

    @property
    def shape(self) -> tuple[int, ...]:
        return self._shape

    def read(self, dim: int = 0, start: int = 0, stop: int | None = None) -> torch.Tensor:
        stop = self._shape[dim] if stop is None else stop
        if dim == 0:
            return self._slice[start:stop]
        if dim == 1:
            return self._slice[:, start:stop]
        raise ValueError(f"cannot slice {self.name} along dimension {dim}")


@contextmanager
def _default_dtype(dtype: torch.dtype) -> Iterator[None]:
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def load_model(
    model_dir: str | Path,
    config: ModelConfig,
    *,
    dtype: torch.dtype,
    device: torch.device,
    tp: TensorParallel,
    backend: AttentionBackend[Any],
    max_positions: int,
    stage: PipelineStage | None = None,
) -> LlamaForCausalLM:
    """Builds this rank's shard of its pipeline stage on `device` in `dtype` and loads its weights."""
    with torch.device(device), _default_dtype(dtype):
        model = LlamaForCausalLM(config, backend, tp, max_positions, stage)
    load_weights(model, Path(model_dir))
    return model.eval()


def load_weights(model: LlamaForCausalLM, model_dir: Path) -> None:
    loaded: dict[tuple[str, str], set[int | None]] = {}
    for path in checkpoint_files(model_dir):
        with safe_open(str(path), framework="pt", device="cpu") as file:
            for name in file.keys():
                target = model.checkpoint_target(name)
                if target is None:
                    continue
                module_path, param_name, shard_id = target
                module = _submodule(model, module_path, name)
                source = SafetensorsTensor(name, file.get_slice(name))
                if isinstance(module, LoadsWeights):
                    module.load_weight(param_name, source, shard_id)
                else:
                    param = getattr(module, param_name, None)
                    if not isinstance(param, torch.nn.Parameter):
                        raise ValueError(f"checkpoint tensor {name} has no place in {model.config.architecture}")
                    copy_exact(param, source)
                loaded.setdefault((module_path, param_name), set()).add(shard_id)
    _check_complete(model, loaded)


def _submodule(model: LlamaForCausalLM, path: str, checkpoint_name: str) -> torch.nn.Module:
    try:
        return model.get_submodule(path)
    except AttributeError:
        raise ValueError(f"checkpoint tensor {checkpoint_name} has no place in {model.config.architecture}") from None


def _check_complete(model: LlamaForCausalLM, loaded: dict[tuple[str, str], set[int | None]]) -> None:
    missing = []
    for module_path, module in model.named_modules():
        for param_name, _ in module.named_parameters(recurse=False):
            if module is model.lm_head and model.shares_embedding_with_head:
                continue
            shards: set[int | None] = (
                set(range(len(module.parts))) if isinstance(module, ColumnParallelLinear) else {None}
            )
            absent = shards - loaded.get((module_path, param_name), set())
            if absent:
                parts = sorted(part for part in absent if part is not None)
                missing.append(f"{module_path}.{param_name}" + (f" (parts {parts})" if parts else ""))
    if missing:
        raise ValueError(f"the checkpoint lacks {len(missing)} weights, e.g. {missing[:5]}")
