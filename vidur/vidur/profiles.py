"""Reading operator profiles in Vidur's table format (times in milliseconds).

A profiling root holds `compute/<gpu>/<org>/<model>/mlp.csv` (MLP-side operators by token count
and tensor-parallel degree), optionally `attention.csv` beside it (in this project's format, as
`vidur profile` writes it, or in Vidur's own), and `network/<topology>/{all_reduce,send_recv}.csv`
(collectives by message size). Several roots may be given; a later root's table replaces an
earlier one, so your own profiles override the public ones: an `mlp.csv` replaces every earlier
root's tables of the same (GPU, model shape), an `attention.csv` the one for the same (GPU, model
folder), a collective table the one for the same (topology, collective, workers, devices per node).
Tables of one shape in the same root are all kept (Llama-2-70B and Llama-3-70B share a layer
shape); a model uses its own folder's, else the last one read.
"""

import csv
import math
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
    """One measured attention kernel on one GPU (heads are that GPU's share): a batch of
    `batch_size` requests, each running `num_tokens` queries (1 for a decode) after
    `num_context` cached tokens. `backend` names the attention backend of Vidur-format rows;
    this project's own profiles name none ("")."""

    kernel: str
    n_q_head: int
    n_kv_head: int
    head_dim: int
    batch_size: int
    num_tokens: int
    num_context: int
    time_s: float
    backend: str = ""


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


class _Record:
    """One row of a table, read by column name; every problem names the file, line and column."""

    def __init__(self, path: Path, line: int, header: list[str], row: list[str]) -> None:
        if len(row) != len(header):
            raise ValueError(f"profile {path} line {line} has {len(row)} fields for {len(header)} columns")
        self.path, self.line = path, line
        self.values = dict(zip(header, row, strict=True))

    def text(self, column: str) -> str:
        if column not in self.values:
            raise ValueError(f"profile {self.path} has no column {column!r}")
        return self.values[column].strip()

    def _problem(self, column: str, what: str) -> ValueError:
        return ValueError(f"profile {self.path} line {self.line}: {column} {what}, got {self.values[column]!r}")

    def integer(self, column: str, minimum: int) -> int:
        try:
            value = int(self.text(column))
        except ValueError as error:
            if column not in self.values:
                raise
            raise self._problem(column, "is not an integer") from error
        if value < minimum:
            raise self._problem(column, f"must be at least {minimum}")
        return value

    def boolean(self, column: str) -> bool:
        value = self.text(column).lower()
        if value not in ("true", "false", "1", "0"):
            raise self._problem(column, "is not True or False")
        return value in ("true", "1")

    def time_s(self, operator: str) -> float | None:
        """The operator's median time in seconds; None where the table has no such column or
        the row leaves it empty or zero (Vidur writes 0 for kernels a row did not run)."""
        column = f"time_stats.{operator}.median"
        if not self.values.get(column, "").strip():
            return None
        try:
            value = float(self.values[column])
        except ValueError as error:
            raise self._problem(column, "is not a number") from error
        if not (math.isfinite(value) and value >= 0):
            raise self._problem(column, "must be a non-negative time")
        return value / 1e3 if value > 0 else None


def _check_one_prefill(record: _Record, batch: int) -> None:
    if batch != 1:
        raise ValueError(f"profile {record.path} line {record.line}: a prefill row times one sequence, not {batch}")


def _own_attention_row(record: _Record) -> list[AttentionSample]:
    """This project's format (`vidur profile`): heads per GPU, `head_dim`, `num_tokens` queries
    per sequence, and a time column for each kernel the row ran."""
    q_heads, kv_heads = record.integer("n_q_head", 1), record.integer("n_kv_head", 1)
    head_dim, batch = record.integer("head_dim", 1), record.integer("batch_size", 1)
    tokens, context = record.integer("num_tokens", 1), record.integer("kv_cache_size", 0)
    if record.time_s("attn_prefill") is not None:
        _check_one_prefill(record, batch)
    return [
        AttentionSample(kernel, q_heads, kv_heads, head_dim, batch, tokens, context, time_s)
        for kernel in ATTENTION_KERNELS
        if (time_s := record.time_s(kernel)) is not None
    ]


def _vidur_attention_row(record: _Record) -> list[AttentionSample]:
    """Vidur's format: the whole model's heads (`n_q_head`, `n_kv_head`) and width (`n_embd`),
    split over `num_tensor_parallel_workers` GPUs (KV heads replicated where there are fewer
    than GPUs); a prefill row is one sequence's `prefill_chunk_size` queries, a decode row
    `batch_size` sequences of one query, each after `kv_cache_size` cached tokens.

    The kernel's time includes the reshapes Vidur times around it (the output reshape is a
    copy that nothing else in the simulator charges). The KV save is read from decode rows
    only: in prefill rows (FlashInfer's) it takes up to 0.34 ms for at most 3 MB of keys and
    values, longer at TP 4 than at TP 1 and growing with the cached context, which is not the
    cost of the copy (decode rows write hundreds of tokens in 2-5 us)."""
    workers = record.integer("num_tensor_parallel_workers", 1)
    q_heads, kv_heads = record.integer("n_q_head", 1), record.integer("n_kv_head", 1)
    embedding = record.integer("n_embd", 1)
    where = f"profile {record.path} line {record.line}"
    if q_heads % workers:
        raise ValueError(f"{where}: {q_heads} query heads do not split over {workers} GPUs")
    if embedding % q_heads:
        raise ValueError(f"{where}: n_embd {embedding} is not a multiple of n_q_head {q_heads}")
    shape = (q_heads // workers, max(kv_heads // workers, 1), embedding // q_heads)
    backend = record.text("attention_backend").removeprefix("AttentionBackend.")
    is_prefill = record.boolean("is_prefill")
    batch, context = record.integer("batch_size", 1), record.integer("kv_cache_size", 0)
    if is_prefill:
        _check_one_prefill(record, batch)
    kernel = "attn_prefill" if is_prefill else "attn_decode"
    tokens = record.integer("prefill_chunk_size", 1) if is_prefill else 1
    samples = []
    kernel_s = record.time_s(kernel)
    if kernel_s is not None:
        reshapes_s = sum(record.time_s(op) or 0.0 for op in ("attn_input_reshape", "attn_output_reshape"))
        samples.append(AttentionSample(kernel, *shape, batch, tokens, context, kernel_s + reshapes_s, backend))
    save_s = record.time_s("attn_kv_cache_save")
    if save_s is not None and not is_prefill:
        samples.append(AttentionSample("attn_kv_cache_save", *shape, batch, 1, context, save_s, backend))
    return samples


def read_attention_profile(path: Path) -> list[AttentionSample]:
    """An `attention.csv` in this project's format or in Vidur's (told apart by Vidur's
    `prefill_chunk_size` column), rows in file order."""
    header, rows = _read_rows(path)
    read_row = _vidur_attention_row if "prefill_chunk_size" in header else _own_attention_row
    samples = []
    for line, row in enumerate(rows, start=2):
        if row:
            samples.extend(read_row(_Record(path, line, header, row)))
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

    """By (GPU, model folder)."""
    compute: dict[tuple[str, str], ComputeProfile] = field(default_factory=dict)
    attention: dict[str, list[AttentionSample]] = field(default_factory=dict)
    network: dict[NetworkKey, Series] = field(default_factory=dict)

    def compute_for_gpu(self, gpu: str) -> list[ComputeProfile]:
        return [profile for (name, _), profile in self.compute.items() if name == gpu]

    def compute_profile(self, gpu: str, shape: LayerShape, model_folder: str | None) -> ComputeProfile | None:
        """The table a model of `shape` uses on `gpu`: its own folder's, else the last one of
        that shape."""
        own = self.compute.get((gpu, model_folder)) if model_folder is not None else None
        if own is not None and own.shape == shape:
            return own
        same_shape = [profile for profile in self.compute_for_gpu(gpu) if profile.shape == shape]
        return same_shape[-1] if same_shape else None


def load_profiles(roots: list[Path]) -> ProfileSet:
    """Reads every table under `roots`, later roots overriding earlier ones."""
    profiles = ProfileSet()
    attention: dict[tuple[str, str], list[AttentionSample]] = {}
    for root in roots:
        if not root.is_dir():
            raise ValueError(f"profiling directory {root} does not exist")
        read = [
            read_compute_profile(path, path.parts[-4], "/".join(path.parts[-3:-1]))
            for path in sorted(root.glob("compute/*/*/*/mlp.csv"))
        ]
        replaced = {(profile.gpu, profile.shape) for profile in read}
        for key, earlier in list(profiles.compute.items()):
            if (earlier.gpu, earlier.shape) in replaced:
                del profiles.compute[key]
        for profile in read:
            profiles.compute[(profile.gpu, profile.model)] = profile
        for path in sorted(root.glob("compute/*/*/*/attention.csv")):
            attention[(path.parts[-4], "/".join(path.parts[-3:-1]))] = read_attention_profile(path)
        for path in sorted(root.glob("network/*/*.csv")):
            if path.stem in COLLECTIVES:
                profiles.network.update(read_network_profile(path, path.parts[-2]))
    for (gpu, _), samples in sorted(attention.items()):
        profiles.attention.setdefault(gpu, []).extend(samples)
    return profiles
