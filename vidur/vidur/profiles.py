"""Reading operator profiles in Vidur's table format (times in milliseconds).

A profiling root holds `compute/<gpu>/<org>/<model>/mlp.csv` (MLP-side operators by token count
and tensor-parallel degree), optionally `attention.csv` beside it (this project's profiler
writes one), and `network/<topology>/{all_reduce,send_recv}.csv` (collectives by message size).
Several roots may be given; a later root's table replaces an earlier one, so your own profiles
override the public ones: an `mlp.csv` replaces the one for the same (GPU, model shape), an
`attention.csv` the one for the same (GPU, model folder), a collective table the one for the
same (topology, collective, workers, devices per node).
"""

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

MLP_OPERATORS = (
    "emb",
    "input_layernorm",
    "attn_pre_proj",
    "attn_rope",
    "attn_post_proj",
    "post_attention_layernorm",
    "mlp_up_proj",
    "mlp_act",
    "mlp_down_proj",
    "add",
)
# Profiled where present (this project's profiler times the engine's LM head); else a roofline.
EXTRA_OPERATORS = ("lm_head",)
MLP_SHAPE_COLUMNS = ("n_head", "n_kv_head", "n_embd", "n_expanded_embd", "use_gated_mlp")
ATTENTION_KERNELS = ("attn_prefill", "attn_decode", "attn_kv_cache_save")
COLLECTIVES = ("all_reduce", "send_recv")


@dataclass(frozen=True, slots=True)
class LayerShape:
    """What an operator's time depends on besides tokens (the vocabulary only sizes the LM head,
    which is not profiled, so tables match on everything else). A table without a `head_dim`
    column has `n_embd / n_head`."""

    n_head: int
    n_kv_head: int
    n_embd: int
    n_expanded_embd: int
    use_gated_mlp: bool
    head_dim: int


@dataclass(frozen=True, slots=True)
class Series:
    """Median time in seconds at each distinct x (token count or bytes), x ascending."""

    x: np.ndarray
    time_s: np.ndarray


@dataclass(slots=True)
class ComputeProfile:
    """One `mlp.csv`: per operator and tensor-parallel degree, time by token count."""

    gpu: str
    model: str
    shape: LayerShape
    path: Path
    series: dict[tuple[str, int], Series] = field(default_factory=dict)
    """The vocabulary the `lm_head` series was timed at (None: the table has no such column)."""
    vocab_size: int | None = None

    @property
    def tensor_parallel_degrees(self) -> list[int]:
        return sorted({tp for _, tp in self.series})


@dataclass(frozen=True, slots=True)
class AttentionSample:
    """One measured attention kernel: a batch of `batch_size` requests, each running
    `num_tokens` queries (1 for a decode) after `num_context` cached tokens."""

    kernel: str
    n_q_head: int
    n_kv_head: int
    head_dim: int
    batch_size: int
    num_tokens: int
    num_context: int
    time_s: float


@dataclass(frozen=True, slots=True)
class NetworkKey:
    topology: str
    collective: str
    num_workers: int
    devices_per_node: int


def _median_by_x(xs: np.ndarray, times: np.ndarray) -> Series:
    """Collapses repeated measurements of the same x to their median (in seconds)."""
    xs = np.asarray(xs, dtype=np.float64)
    times = np.asarray(times, dtype=np.float64)
    valid = np.isfinite(times) & (times > 0)
    xs, times = xs[valid], times[valid]
    order = np.lexsort((times, xs))
    xs, times = xs[order], times[order]
    keys, starts, counts = np.unique(xs, return_index=True, return_counts=True)
    medians = (times[starts + (counts - 1) // 2] + times[starts + counts // 2]) / 2
    return Series(keys, medians / 1e3)


def _read_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="") as file:
        reader = csv.reader(file)
        try:
            header = next(reader)
        except StopIteration:
            raise ValueError(f"profile {path} is empty") from None
        return header, list(reader)


def _column(header: list[str], rows: list[list[str]], name: str, path: Path) -> list[str]:
    try:
        index = header.index(name)
    except ValueError:
        raise ValueError(f"profile {path} has no column {name!r}") from None
    return [row[index] for row in rows]


def _as_bool(value: str) -> bool:
    return value.strip().lower() in ("true", "1")


def read_compute_profile(path: Path, gpu: str, model: str) -> ComputeProfile:
    header, rows = _read_rows(path)
    if not rows:
        raise ValueError(f"profile {path} has no rows")
    shape_values = {name: _column(header, rows, name, path) for name in MLP_SHAPE_COLUMNS}
    first = {name: values[0] for name, values in shape_values.items()}
    if "head_dim" in header:
        head_dim = int(_column(header, rows, "head_dim", path)[0])
    else:
        head_dim = int(first["n_embd"]) // int(first["n_head"])
    shape = LayerShape(
        n_head=int(first["n_head"]),
        n_kv_head=int(first["n_kv_head"]),
        n_embd=int(first["n_embd"]),
        n_expanded_embd=int(first["n_expanded_embd"]),
        use_gated_mlp=_as_bool(first["use_gated_mlp"]),
        head_dim=head_dim,
    )
    tokens = np.array(_column(header, rows, "num_tokens", path), dtype=np.float64)
    degrees = np.array(_column(header, rows, "num_tensor_parallel_workers", path), dtype=np.int64)
    vocab_size = int(_column(header, rows, "vocab_size", path)[0]) if "vocab_size" in header else None
    profile = ComputeProfile(gpu, model, shape, path, vocab_size=vocab_size)
    for operator in MLP_OPERATORS + EXTRA_OPERATORS:
        name = f"time_stats.{operator}.median"
        if name not in header:
            continue
        times = np.array([float(v) if v else np.nan for v in _column(header, rows, name, path)])
        for tp in np.unique(degrees):
            picked = degrees == tp
            series = _median_by_x(tokens[picked], times[picked])
            if len(series.x):
                profile.series[(operator, int(tp))] = series
    return profile


def read_attention_profile(path: Path) -> list[AttentionSample]:
    """This project's `attention.csv` (see `vidur profile`)."""
    header, rows = _read_rows(path)
    samples = []
    for row in rows:
        record = dict(zip(header, row, strict=True))
        for kernel in ATTENTION_KERNELS:
            value = record.get(f"time_stats.{kernel}.median", "")
            if not value:
                continue
            samples.append(
                AttentionSample(
                    kernel=kernel,
                    n_q_head=int(record["n_q_head"]),
                    n_kv_head=int(record["n_kv_head"]),
                    head_dim=int(record["head_dim"]),
                    batch_size=int(record["batch_size"]),
                    num_tokens=int(record["num_tokens"]),
                    num_context=int(record["kv_cache_size"]),
                    time_s=float(value) / 1e3,
                )
            )
    return samples


def read_network_profile(path: Path, topology: str) -> dict[NetworkKey, Series]:
    header, rows = _read_rows(path)
    collective = path.stem
    time_column = _column(header, rows, f"time_stats.{collective}.median", path)
    workers = np.array(_column(header, rows, "num_workers", path), dtype=np.int64)
    per_node = np.array(_column(header, rows, "devices_per_node", path), dtype=np.int64)
    sizes = np.array(_column(header, rows, "size", path), dtype=np.float64)
    times = np.array(time_column, dtype=np.float64)
    tables = {}
    for w, d in sorted({(int(w), int(d)) for w, d in zip(workers, per_node, strict=True)}):
        picked = (workers == w) & (per_node == d)
        tables[NetworkKey(topology, collective, w, d)] = _median_by_x(sizes[picked], times[picked])
    return tables


@dataclass(slots=True)
class ProfileSet:
    """Every table found under the given roots."""

    compute: dict[tuple[str, LayerShape], ComputeProfile] = field(default_factory=dict)
    attention: dict[str, list[AttentionSample]] = field(default_factory=dict)
    network: dict[NetworkKey, Series] = field(default_factory=dict)

    def compute_for_gpu(self, gpu: str) -> list[ComputeProfile]:
        return [profile for (name, _), profile in self.compute.items() if name == gpu]


def load_profiles(roots: list[Path]) -> ProfileSet:
    """Reads every table under `roots`, later roots overriding earlier ones."""
    profiles = ProfileSet()
    attention: dict[tuple[str, str], list[AttentionSample]] = {}
    for root in roots:
        if not root.is_dir():
            raise ValueError(f"profiling directory {root} does not exist")
        for path in sorted(root.glob("compute/*/*/*/mlp.csv")):
            gpu = path.parts[-4]
            model = "/".join(path.parts[-3:-1])
            profile = read_compute_profile(path, gpu, model)
            profiles.compute[(gpu, profile.shape)] = profile
        for path in sorted(root.glob("compute/*/*/*/attention.csv")):
            attention[(path.parts[-4], "/".join(path.parts[-3:-1]))] = read_attention_profile(path)
        for path in sorted(root.glob("network/*/*.csv")):
            if path.stem in COLLECTIVES:
                profiles.network.update(read_network_profile(path, path.parts[-2]))
    for (gpu, _), samples in sorted(attention.items()):
        profiles.attention.setdefault(gpu, []).extend(samples)
    return profiles
