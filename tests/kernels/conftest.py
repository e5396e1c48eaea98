"""The kernels run on a GPU when there is one, else in Triton's interpreter on the CPU (slow:
keep shapes small). The interpreter is chosen through the environment, before the kernels'
package is imported."""

import os
import sys
from pathlib import Path

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

# paged_cases.py beside this file is imported by the tests.
sys.path.insert(0, str(Path(__file__).parent))
