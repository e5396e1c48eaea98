"""Runs a search: plans every deployment, finds each one's capacity in a worker process (one per
core, or a Ray task: `on_ray.py`), caches every probe and every finished point, and ranks the
points by cost."""

import hashlib
import multiprocessing
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from importlib.metadata import version
from pathlib import Path

import msgspec
from tqdm import tqdm

from vidur.api import deadlines_for, workload_for
from vidur.config import SearchConfig, VidurConfig
from vidur.deployment import Deployment, DeploymentConfig, plan_deployment
from vidur.errors import DeploymentError
from vidur.models import model_config_path
from vidur.predictor import OperatorPredictor
from vidur.search.cache import DiskCache, cache_key
from vidur.search.capacity import CapacityResult, Probe, find_capacity
from vidur.search.space import deployments_in
from vidur.simulation import Simulator
from vidur.slo_check import slo_verdict


# A new release may simulate or score differently: cached results of another one do not count.
VERSIONS = {package: version(package) for package in ("servekit-vidur", "servekit-metron")}


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def input_files(config: VidurConfig) -> dict[str, str]:
    """Content hashes of the files outcomes depend on besides the config and the profiles: the
    workload's trace files and the model's config.json."""
    workload = config.workload
    model = model_config_path(config.deployment.replica.model)
    paths = [workload.arrivals.trace_path, workload.lengths.trace_path, model]
    return {str(path): file_digest(Path(path)) for path in paths if path is not None and Path(path).is_file()}


def point_name(config: DeploymentConfig) -> str:
    r, s, c = config.replica, config.scheduler, config.cluster
    budget = f" budget={s.token_budget}" if s.policy == "sarathi" else ""
    layout = f"{r.gpu} tp={r.tensor_parallel} pp={r.pipeline_parallel} x{c.num_replicas}"
    return f"{layout} {s.policy}{budget} seqs={s.max_num_seqs}"


@dataclass(slots=True)
class SearchPoint:
    """One deployment's outcome. `cost_per_qps` is dollars per hour per request/s of capacity."""

    name: str
    config: dict[str, object]
    feasible: bool
    reason: str | None = None
    capacity_qps: float = 0.0
    capped: bool = False
    num_gpus: int = 0
    cost_per_hour: float = 0.0
    probes: list[dict[str, object]] = field(default_factory=list)

    @property
    def cost_per_qps(self) -> float | None:
        return self.cost_per_hour / self.capacity_qps if self.capacity_qps > 0 else None

    @property
    def cost_per_million_requests(self) -> float | None:
        return self.cost_per_hour / (self.capacity_qps * 3600) * 1e6 if self.capacity_qps > 0 else None

    def as_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["cost_per_qps"] = self.cost_per_qps
        data["cost_per_million_requests"] = self.cost_per_million_requests
        return data


@dataclass(frozen=True, slots=True)
class SearchJob:
    """Everything a worker needs for one deployment, as plain data. `fingerprint` identifies the
    profile files, `files` the content of the other files read (`input_files`)."""

    deployment: Deployment
    config: VidurConfig
    cache_dir: str
    fingerprint: str
    files: dict[str, str] = field(default_factory=dict)

    def _inputs(self) -> dict[str, object]:
        """Everything a probe's outcome depends on besides its rate: the config, the resolved
        GPU and model (catalogue prices and shapes), file contents, profiles and versions."""
        return {
            "deployment": self.deployment.config.as_dict(),
            "gpu": asdict(self.deployment.shape.gpu),
            "model": asdict(self.deployment.shape.model),
            "files": self.files,
            "versions": VERSIONS,
            "workload": msgspec.to_builtins(self.config.workload),
            "deadlines": msgspec.to_builtins(self.config.deadlines),
            "simulated_prefill_deadline": self.config.simulated_prefill_deadline,
            "slo": msgspec.to_builtins(self.config.slo),
            "predictor": self.fingerprint,
        }

    def probe_key(self, qps: float) -> str:
        return cache_key(self._inputs() | {"qps": repr(qps)})

    def point_key(self) -> str:
        search = self.config.search
        return cache_key(
            self._inputs()
            | {"initial_qps": search.initial_qps, "max_qps": search.max_qps, "precision": search.precision}
        )


def evaluate_point(job: SearchJob) -> SearchPoint:
    """Finds one deployment's capacity (runs in a worker), unless a worker that died before
    returning it had finished it."""
    cache = DiskCache(Path(job.cache_dir))
    cached = cache.get(job.point_key())
    if cached is not None:
        return _from_cache(cached)
    simulator = Simulator(job.deployment)
    config = job.config
    deadlines = deadlines_for(config, simulator)

    def probe(qps: float) -> Probe:
        key = job.probe_key(qps)
        cached = cache.get(key)
        if cached is not None:
            return Probe(**cached)
        workload = workload_for(config.workload.with_rate(qps), job.deployment)
        result = simulator.run(workload, record_iterations=False)
        verdict = slo_verdict(result, deadlines, config.slo)
        outcome = Probe(qps, verdict.passed, verdict.describe())
        cache.put(key, asdict(outcome))
        return outcome

    search = config.search
    capacity: CapacityResult = find_capacity(probe, search.initial_qps, search.max_qps, search.precision)
    point = SearchPoint(
        name=point_name(job.deployment.config),
        config=job.deployment.config.as_dict(),
        feasible=True,
        capacity_qps=capacity.capacity_qps,
        capped=capacity.capped,
        num_gpus=job.deployment.num_gpus,
        cost_per_hour=job.deployment.cost_per_hour,
        probes=[asdict(p) for p in capacity.probes],
    )
    cache.put(job.point_key(), point.as_dict())
    return point


def _from_cache(data: dict[str, object]) -> SearchPoint:
    fields = {name: data[name] for name in SearchPoint.__dataclass_fields__ if name in data}
    return SearchPoint(**fields)  # type: ignore[arg-type]


def plan_search(
    config: VidurConfig, space: SearchConfig, predictor: OperatorPredictor, cache_dir: Path, fingerprint: str
) -> tuple[list[SearchJob], list[SearchPoint]]:
    """Jobs for the feasible deployments, and points for those that cannot exist."""
    jobs, infeasible = [], []
    files = input_files(config)
    for deployment_config in deployments_in(space, config.deployment):
        try:
            deployment = plan_deployment(deployment_config, predictor)
        except DeploymentError as error:
            infeasible.append(
                SearchPoint(point_name(deployment_config), deployment_config.as_dict(), False, reason=str(error))
            )
            continue
        jobs.append(SearchJob(deployment, config, str(cache_dir.resolve()), fingerprint, files))
    return jobs, infeasible


def run_search(
    config: VidurConfig,
    predictor: OperatorPredictor,
    *,
    cache_dir: Path,
    fingerprint: str,
    workers: int,
    progress: bool = True,
    ray_address: str | None = None,
) -> list[SearchPoint]:
    """Every point of the search space, finished ones taken from the cache. The others run in
    `workers` processes, or with `ray_address` as Ray tasks (`on_ray.map_on_ray`)."""
    jobs, points = plan_search(config, config.search, predictor, cache_dir, fingerprint)
    cache = DiskCache(cache_dir)
    pending = []
    for job in jobs:
        cached = cache.get(job.point_key())
        if cached is not None:
            points.append(_from_cache(cached))
        else:
            pending.append(job)
    bar = tqdm(total=len(jobs), initial=len(jobs) - len(pending), desc="deployments", disable=not progress)
    if ray_address is None:
        finished = _map(pending, workers)
    else:
        from vidur.search.on_ray import map_on_ray

        finished = map_on_ray(pending, cache, ray_address, workers)
    with bar:
        for point in finished:
            points.append(point)
            bar.update(1)
            bar.set_postfix_str(f"{point.name}: {point.capacity_qps:.3g} QPS")
    return sorted(points, key=lambda p: p.name)


def _map(jobs: list[SearchJob], workers: int) -> Iterator[SearchPoint]:
    if workers <= 1 or len(jobs) <= 1:
        yield from map(evaluate_point, jobs)
        return
    context = multiprocessing.get_context("spawn")
    with context.Pool(min(workers, len(jobs))) as pool:
        yield from pool.imap_unordered(evaluate_point, jobs)


def pareto_frontier(points: list[SearchPoint]) -> list[SearchPoint]:
    """The points no other point beats on both cost (lower) and capacity (higher)."""
    candidates = sorted(
        (p for p in points if p.feasible and p.capacity_qps > 0), key=lambda p: (p.cost_per_hour, -p.capacity_qps)
    )
    frontier: list[SearchPoint] = []
    for point in candidates:
        if not frontier or point.capacity_qps > frontier[-1].capacity_qps:
            frontier.append(point)
    return frontier


def best_point(points: list[SearchPoint]) -> SearchPoint | None:
    """The cheapest per unit of capacity."""
    ranked = [p for p in points if p.cost_per_qps is not None]
    return min(ranked, key=lambda p: (p.cost_per_qps, -p.capacity_qps)) if ranked else None
