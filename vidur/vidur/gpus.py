"""The GPU catalogue: memory, bandwidth, dense bf16 FLOP/s, interconnect and price per hour.

Peak figures are the vendors' datasheet numbers (dense, no sparsity); memory is what
`nvidia-smi` reports. Prices are illustrative on-demand list prices per GPU-hour (2024 cloud
offerings); set `price_per_hour` in a config to use your own.

Any device `vidur profile` measured is a device too: `--gpu <root>/compute/<device>` (the folder
holding its `device.json` and tables) is that device, with the figures measured there (copy
bandwidth, matrix-product rate, memory), no price (set one with `gpu_price_per_hour`) and no
interconnect (it was measured alone: one device per replica).
"""

import json
from dataclasses import dataclass, replace
from pathlib import Path

from vidur.errors import DeploymentError, UnknownGpuError

GIB = 1 << 30


@dataclass(frozen=True, slots=True)
class GpuSpec:
    """The GPU's own operator and attention profiles are looked up under
    `profiling/compute/<name>/`; `topology` names its folder under `profiling/network/` (`_dgx`
    for an NVSwitch node, `_pairwise_nvlink` for NVLink pairs). Where the GPU has no profile of
    its own, it borrows the efficiencies (fractions of peak) fitted on its `reference_gpu`."""

    name: str
    memory_gib: float
    memory_bandwidth_gb_s: float
    bf16_tflops: float
    interconnect_gb_s: float
    gpus_per_node: int
    price_per_hour: float
    topology: str
    reference_gpu: str | None = None

    def __post_init__(self) -> None:
        for field in ("memory_gib", "memory_bandwidth_gb_s", "bf16_tflops", "gpus_per_node"):
            if not getattr(self, field) > 0:
                raise DeploymentError(f"GPU {self.name}: {field} must be positive, got {getattr(self, field)}")
        if not (self.interconnect_gb_s > 0 or (self.interconnect_gb_s == 0 and self.gpus_per_node == 1)):
            raise DeploymentError(
                f"GPU {self.name}: interconnect_gb_s must be positive (0 only for a device alone), "
                f"got {self.interconnect_gb_s}"
            )
        if self.price_per_hour < 0:
            raise DeploymentError(f"GPU {self.name}: price_per_hour must not be negative, got {self.price_per_hour}")

    @property
    def memory_bytes(self) -> float:
        return self.memory_gib * GIB

    @property
    def peak_flops(self) -> float:
        return self.bf16_tflops * 1e12

    @property
    def peak_bytes_per_s(self) -> float:
        return self.memory_bandwidth_gb_s * 1e9


CATALOGUE: dict[str, GpuSpec] = {
    spec.name: spec
    for spec in (
        GpuSpec("a100", 80.0, 2039, 312, 600, 8, 1.79, "a100_dgx"),
        GpuSpec("a100_40gb", 40.0, 1555, 312, 600, 8, 1.29, "a100_dgx", reference_gpu="a100"),
        GpuSpec("a40", 45.0, 696, 149.7, 112.5, 8, 0.79, "a40_pairwise_nvlink"),
        GpuSpec("h100", 79.6, 3350, 989, 900, 8, 2.99, "h100_dgx"),
        GpuSpec("h100_pcie", 79.6, 2000, 756, 600, 8, 2.49, "h100_pairwise_nvlink", reference_gpu="h100"),
        GpuSpec("h200", 140.4, 4800, 989, 900, 8, 3.79, "h100_dgx", reference_gpu="h100"),
        GpuSpec("l40s", 45.0, 864, 362, 64, 8, 1.19, "pcie", reference_gpu="a40"),
        GpuSpec("l4", 22.5, 300, 121, 64, 8, 0.71, "pcie", reference_gpu="a40"),
        GpuSpec("a10g", 22.5, 600, 70, 64, 8, 1.01, "pcie", reference_gpu="a40"),
    )
}

ALIASES: dict[str, str] = {
    "a100-80gb": "a100",
    "a100_80gb": "a100",
    "a100-40gb": "a100_40gb",
    "h100-sxm": "h100",
    "h100_sxm": "h100",
    "h100-pcie": "h100_pcie",
    "a10": "a10g",
}


def canonical_gpu_name(name: str) -> str:
    """The catalogue key a GPU name or alias stands for (case-insensitive); unknown names as given,
    lower-cased."""
    key = name.lower()
    return ALIASES.get(key, key)


DEVICE_FILE = "device.json"


def profiled_device_folder(name: str) -> Path | None:
    """The folder `name` stands for when it is a profiled device's (it holds a device.json)."""
    folder = Path(name)
    return folder if (folder / DEVICE_FILE).is_file() else None


def profiling_root_of(folder: Path) -> Path:
    """The profiling root a device folder (`<root>/compute/<device>`) belongs to."""
    folder = folder.resolve()
    if folder.parent.name != "compute":
        raise UnknownGpuError(f"device folder {folder} is not inside a profiling root's compute/ folder")
    return folder.parent.parent


def read_device_spec(folder: Path) -> GpuSpec:
    """The spec `vidur profile` measured for the device in `folder`."""
    path = folder / DEVICE_FILE
    try:
        data = json.loads(path.read_text())
        return GpuSpec(
            name=folder.resolve().name,
            memory_gib=float(data["memory_gib"]),
            memory_bandwidth_gb_s=float(data["memory_bandwidth_gb_s"]),
            bf16_tflops=float(data["matmul_tflops"]),
            interconnect_gb_s=0.0,
            gpus_per_node=1,
            price_per_hour=0.0,
            topology="none",
        )
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
        detail = f"missing {error}" if isinstance(error, KeyError) else str(error)
        raise UnknownGpuError(f"{path} is not a device spec written by `vidur profile`: {detail}") from None


def get_gpu(name: str, price_per_hour: float | None = None) -> GpuSpec:
    """A catalogue GPU by name or alias (case-insensitive), or a profiled device's folder,
    optionally with your own price."""
    folder = profiled_device_folder(name)
    if folder is not None:
        spec = read_device_spec(folder)
    else:
        key = canonical_gpu_name(name)
        if key not in CATALOGUE:
            raise UnknownGpuError(
                f"unknown GPU {name!r}; known GPUs: {', '.join(sorted(CATALOGUE))}, or a folder "
                "`vidur profile` wrote (one holding device.json)"
            )
        spec = CATALOGUE[key]
    return spec if price_per_hour is None else replace(spec, price_per_hour=price_per_hour)
