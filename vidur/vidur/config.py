"""Config files (TOML or YAML) and `section.key=value` overrides, turned into typed configs.

A file has up to these sections (every key optional; see README.md for an example):
`replica`, `scheduler`, `cluster`, `cpu_overheads` (the deployment), `workload` (metron's
`WorkloadConfig`: `arrivals`, `lengths`), `deadlines` (metron's `DeadlineConfig`; its
`prefill` may also be `"simulated"`, the default: the deployment's own predicted prefill time
plus `ttft_slack_s`, or `"fixed"`: `ttft_s`), `slo` (metron's `SloConfig`), `predictor`,
`output`, and `search` for `vidur search`.
"""

import dataclasses
import math
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import yaml
from metron.deadlines import DeadlineConfig
from metron.slo import SloConfig
from metron.workload import WorkloadConfig

from vidur.cost_model import CpuOverheadConfig
from vidur.deployment import ClusterConfig, DeploymentConfig, ReplicaConfig, ReplicaSchedulerConfig

SECTIONS = (
    "replica",
    "scheduler",
    "cluster",
    "cpu_overheads",
    "workload",
    "deadlines",
    "slo",
    "predictor",
    "output",
    "search",
)


@dataclass(frozen=True, slots=True)
class PredictorConfig:
    """Profiling roots, in order (a later root's table replaces an earlier one); empty means the
    public profiles in the data directory."""

    profiling_dirs: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class OutputConfig:
    """`max_simulated_seconds`: stop the run at that simulated time (`--max-simulated-seconds`)."""

    record_iterations: bool = True
    trace_max_iterations: int = 20_000
    plots: bool = True
    max_simulated_seconds: float | None = None

    def __post_init__(self) -> None:
        limit = self.max_simulated_seconds
        if limit is not None and not (math.isfinite(limit) and limit > 0):
            raise ValueError(
                "output.max_simulated_seconds (--max-simulated-seconds) must be a positive number of seconds, "
                f"got {limit}"
            )


@dataclass(frozen=True, slots=True)
class SearchConfig:
    """The deployments to try (every combination) and how capacity is searched: an expanding
    binary search over QPS from `initial_qps`, doubling while runs pass, then halving the gap
    until it is within `precision` (relative) of the capacity."""

    gpus: tuple[str, ...] = ("a100", "h100")
    tensor_parallel: tuple[int, ...] = (1, 2, 4)
    pipeline_parallel: tuple[int, ...] = (1,)
    num_replicas: tuple[int, ...] = (1,)
    policies: tuple[str, ...] = ("sarathi",)
    token_budgets: tuple[int, ...] = (512,)
    max_num_seqs: tuple[int, ...] = (128,)
    initial_qps: float = 1.0
    max_qps: float = 4096.0
    precision: float = 0.05

    def __post_init__(self) -> None:
        if not self.initial_qps > 0:
            raise ValueError(f"search.initial_qps must be positive, got {self.initial_qps}")
        if not self.max_qps >= self.initial_qps:
            raise ValueError(f"search.max_qps ({self.max_qps}) must be at least initial_qps ({self.initial_qps})")
        if not 0 < self.precision < 1:
            raise ValueError(f"search.precision must be in (0, 1), got {self.precision}")
        for name in ("gpus", "tensor_parallel", "pipeline_parallel", "num_replicas", "policies", "token_budgets"):
            if not getattr(self, name):
                raise ValueError(f"search.{name} must list at least one value")


@dataclass(frozen=True, slots=True)
class VidurConfig:
    deployment: DeploymentConfig = field(default_factory=DeploymentConfig)
    workload: WorkloadConfig = field(default_factory=WorkloadConfig)
    deadlines: DeadlineConfig = field(default_factory=DeadlineConfig)
    # Whether the TTFT deadline is the deployment's own predicted prefill time plus the slack.
    simulated_prefill_deadline: bool = True
    slo: SloConfig = field(default_factory=SloConfig)
    predictor: PredictorConfig = field(default_factory=PredictorConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    search: SearchConfig = field(default_factory=SearchConfig)

    def __post_init__(self) -> None:
        if self.output.max_simulated_seconds is not None and self.workload.sessions.num_turns > 1:
            raise ValueError(
                "output.max_simulated_seconds (--max-simulated-seconds) cannot cut a workload of multi-turn "
                "sessions (workload.sessions.num_turns > 1): a cut run keeps the first requests sent, which a "
                "session's later turns need not be"
            )


def read_config_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"config file {path} does not exist")
    text = path.read_text()
    try:
        if path.suffix == ".toml":
            data = tomllib.loads(text)
        elif path.suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text) or {}
        else:
            raise ValueError(f"config file {path} must end in .toml, .yaml or .yml")
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as error:
        raise ValueError(f"config file {path} is not valid: {error}") from None
    if not isinstance(data, dict):
        raise ValueError(f"config file {path} must hold a table of sections")
    return data


def apply_override(data: dict[str, Any], assignment: str) -> None:
    """Sets `section.key[.key...]=value` in `data`; the value is read as YAML (numbers, booleans,
    lists like [1, 2], strings)."""
    path, separator, raw = assignment.partition("=")
    if not separator or not path:
        raise ValueError(f"override {assignment!r} must look like section.key=value")
    keys = path.strip().split(".")
    if keys[0] not in SECTIONS:
        raise ValueError(f"override {assignment!r}: unknown section {keys[0]!r}; sections: {', '.join(SECTIONS)}")
    node = data
    for key in keys[:-1]:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ValueError(f"override {assignment!r}: {key} is not a table")
        node = child
    node[keys[-1]] = yaml.safe_load(raw) if raw.strip() else ""


def _convert(value: Any, annotation: Any, where: str) -> Any:
    origin = typing.get_origin(annotation)
    if dataclasses.is_dataclass(annotation) and isinstance(annotation, type):
        return build_dataclass(annotation, value, where)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        if value is None:
            return None
        return _convert(value, options[0], where)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            value = [value]
        args = typing.get_args(annotation)
        item = args[0] if args else Any
        return tuple(_convert(v, item, where) for v in value)
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if annotation in (int, float, str, bool) and not isinstance(value, annotation):
        raise ValueError(f"{where} must be a {annotation.__name__}, got {value!r}")
    return value


def build_dataclass(cls: type, data: Any, where: str) -> Any:
    """A `cls` from a table, rejecting unknown keys by name."""
    if not isinstance(data, dict):
        raise ValueError(f"{where} must be a table, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(unknown)}; known keys: {', '.join(sorted(names))}")
    return cls(**{key: _convert(value, hints[key], f"{where}.{key}") for key, value in data.items()})


def _metron(cls: type, data: Any, where: str) -> Any:
    try:
        return msgspec.convert(data, cls)
    except msgspec.ValidationError as error:
        raise ValueError(f"[{where}]: {error}") from None


def resolve_trace(path: str, traces_dir: Path | None, base_dir: Path) -> str:
    """A trace given by name is looked for next to the config file, then in the traces directory."""
    candidate = Path(path)
    if candidate.is_absolute() and candidate.is_file():
        return str(candidate)
    for directory in (base_dir, traces_dir):
        if directory is not None and (directory / candidate).is_file():
            return str((directory / candidate).resolve())
    if candidate.is_file():
        return str(candidate.resolve())
    raise ValueError(f"trace {path!r} not found next to the config or in {traces_dir}")


def _resolve_workload_traces(workload: dict[str, Any], traces_dir: Path | None, base_dir: Path) -> None:
    for part in ("arrivals", "lengths"):
        table = workload.get(part)
        if isinstance(table, dict) and isinstance(table.get("trace_path"), str):
            table["trace_path"] = resolve_trace(table["trace_path"], traces_dir, base_dir)


def build_config(data: dict[str, Any], *, traces_dir: Path | None = None, base_dir: Path = Path(".")) -> VidurConfig:
    unknown = sorted(set(data) - set(SECTIONS))
    if unknown:
        raise ValueError(f"unknown config section(s) {', '.join(unknown)}; sections: {', '.join(SECTIONS)}")
    deployment = DeploymentConfig(
        replica=build_dataclass(ReplicaConfig, data.get("replica", {}), "[replica]"),
        scheduler=build_dataclass(ReplicaSchedulerConfig, data.get("scheduler", {}), "[scheduler]"),
        cluster=build_dataclass(ClusterConfig, data.get("cluster", {}), "[cluster]"),
        cpu_overheads=build_dataclass(CpuOverheadConfig, data.get("cpu_overheads", {}), "[cpu_overheads]"),
    )
    workload = dict(data.get("workload", {}))
    _resolve_workload_traces(workload, traces_dir, base_dir)
    deadlines = dict(data.get("deadlines", {}))
    prefill = deadlines.pop("prefill", "simulated")
    if prefill not in ("simulated", "fixed") and not isinstance(prefill, dict):
        raise ValueError(
            '[deadlines] prefill must be "simulated" (the deployment\'s predicted prefill time + ttft_slack_s), '
            '"fixed" (ttft_s) or a table {intercept_s, per_token_s, per_token_squared_s}'
        )
    simulated_prefill = prefill == "simulated"
    if isinstance(prefill, dict):
        deadlines["prefill"] = prefill
    return VidurConfig(
        deployment=deployment,
        workload=_metron(WorkloadConfig, workload, "workload"),
        deadlines=_metron(DeadlineConfig, deadlines, "deadlines"),
        simulated_prefill_deadline=simulated_prefill,
        slo=_metron(SloConfig, data.get("slo", {}), "slo"),
        predictor=build_dataclass(PredictorConfig, data.get("predictor", {}), "[predictor]"),
        output=build_dataclass(OutputConfig, data.get("output", {}), "[output]"),
        search=build_dataclass(SearchConfig, data.get("search", {}), "[search]"),
    )


def load_config(path: str | Path | None, overrides: list[str], *, traces_dir: Path | None = None) -> VidurConfig:
    data = read_config_file(path) if path is not None else {}
    for assignment in overrides:
        apply_override(data, assignment)
    base_dir = Path(path).parent if path is not None else Path(".")
    return build_config(data, traces_dir=traces_dir, base_dir=base_dir)


def default_profiling_roots(data_dir: Path) -> list[Path]:
    """The public profiles in the data directory: `profiling/`, then (where it exists) the
    attention kernel times of `vidur-attention/`."""
    attention = data_dir / "vidur-attention"
    return [data_dir / "profiling"] + ([attention] if attention.is_dir() else [])


def profiling_roots(config: VidurConfig, data_dir: Path, base_dir: Path) -> list[Path]:
    """The configured profiling roots (relative ones from the config file's folder), else the
    public profiles in the data directory."""
    configured = [p if p.is_absolute() else base_dir / p for p in map(Path, config.predictor.profiling_dirs)]
    return configured or default_profiling_roots(data_dir)
