"""The kernels run on a GPU when there is one, else in Triton's interpreter on the CPU (slow:
keep shapes small). The interpreter is chosen through the environment, before the kernels'
package is imported."""

import os
import sys
from pathlib import Path

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

# paged_cases.py beside this file is imported by the tests.
sys.path.insert(0, str(Path(__file__).parent))

from engine.demo_model import build_demo_model  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two layers, multi-query attention: small enough for the interpreter."""
    return build_demo_model(
        tmp_path_factory.mktemp("model"), vocab_size=512, hidden_size=64, intermediate_size=160, num_layers=2,
        num_heads=4, num_kv_heads=1,
    )
