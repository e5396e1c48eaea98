"""Shared fixtures: tiny models with random weights, built once per session in the Hugging Face layout."""

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

# harness.py beside this file is imported by the tests and by the processes they spawn.
sys.path.insert(0, str(Path(__file__).parent))

from engine.demo_model import build_demo_model  # noqa: E402

TINY_SHAPE: dict[str, Any] = dict(
    vocab_size=512, hidden_size=64, intermediate_size=160, num_layers=2, num_heads=4, num_kv_heads=2
)


@pytest.fixture(scope="session")
def model_factory(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """Builds (once per distinct shape) a tiny model directory; keyword arguments override TINY_SHAPE."""
    built: dict[str, Path] = {}

    def build(**overrides: Any) -> Path:
        shape = {**TINY_SHAPE, **overrides}
        key = repr(sorted(shape.items()))
        if key not in built:
            built[key] = build_demo_model(tmp_path_factory.mktemp("model"), **shape)
        return built[key]

    return build


@pytest.fixture(scope="session")
def tiny_llama(model_factory: Callable[..., Path]) -> Path:
    return model_factory()
