"""The spec of a profiled device, measured, written as `device.json` beside its tables so that
`--gpu <its folder>` simulates it (`vidur.devices` reads it back).

    name                   the folder name (a catalogue GPU's name when recognised)
    description            what the device calls itself (CUDA name, or the CPU and its threads)
    memory_gib             memory the device has (CUDA: total; CPU: physical RAM)
    memory_bandwidth_gb_s  measured: a large tensor copied (read + write) per second
    matmul_tflops          measured: a large dense matrix product at `dtype`, FLOP/s
    dtype                  the data type profiled (float32 on the CPU, the engine's choice on GPUs)
    num_devices            devices of this kind visible (CUDA devices; 1 for the CPU)
"""

import json
import os
import platform
import re
from pathlib import Path
from typing import Any

from vidur.profiler.timer import Timer

# A word of the CUDA device name -> the catalogue GPU's folder. The L40 is not the L40S (half the
# FLOP/s): it gets a folder of its own.
_GPU_WORDS = {
    "h100": "h100",
    "h200": "h200",
    "a100": "a100",
    "a40": "a40",
    "l40s": "l40s",
    "l40": "l40",
    "l4": "l4",
    "a10g": "a10g",
    "a10": "a10g",
}
DEVICE_FILE = "device.json"


def profile_folder(cuda_name: str) -> str:
    """The folder for a CUDA device's profiles: the catalogue GPU it is, matched by whole words of
    its name ("NVIDIA L40" is not an L4), else the name itself made a folder name."""
    words = re.findall(r"[a-z0-9]+", cuda_name.lower())
    for word in words:
        folder = _GPU_WORDS.get(word)
        if folder == "h100" and "pcie" in words:
            return "h100_pcie"
        if folder == "a100" and "40gb" in words:
            return "a100_40gb"
        if folder is not None:
            return folder
    return "_".join(words)


def device_name(device: Any) -> str:
    """The folder name of this device's profiles: a catalogue GPU name when recognised."""
    import torch

    if device.type != "cuda":
        return device.type
    return profile_folder(torch.cuda.get_device_name(device))


def measure_device(device: Any, dtype: Any, name: str, repeats: int = 5) -> dict[str, Any]:
    import torch

    timer = Timer(device, warmup=2, repeats=repeats)
    on_cuda = device.type == "cuda"
    copy_bytes = (1 << 30) if on_cuda else (256 << 20)
    source = torch.empty(copy_bytes // 4, dtype=torch.float32, device=device).uniform_()
    target = torch.empty_like(source)
    copy_ms = _median(timer.milliseconds(lambda: target.copy_(source)))
    del source, target
    size = 8192 if on_cuda else 1024
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    matmul_ms = _median(timer.milliseconds(lambda: a @ b))
    if on_cuda:
        properties = torch.cuda.get_device_properties(device)
        memory_bytes = properties.total_memory
        description = torch.cuda.get_device_name(device)
        num_devices = torch.cuda.device_count()
    else:
        memory_bytes = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        description = f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"
        num_devices = 1
    return {
        "name": name,
        "description": description,
        "memory_gib": memory_bytes / 2**30,
        "memory_bandwidth_gb_s": 2 * copy_bytes / (copy_ms / 1e3) / 1e9,
        "matmul_tflops": 2 * size**3 / (matmul_ms / 1e3) / 1e12,
        "dtype": str(dtype).removeprefix("torch."),
        "num_devices": num_devices,
    }


def write_device_spec(spec: dict[str, Any], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / DEVICE_FILE
    path.write_text(json.dumps(spec, indent=2) + "\n")
    return path


def _median(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[len(ordered) // 2]
