"""A deployment: what runs (model, GPU, parallelism), how each replica schedules, how many
replicas and how requests are routed to them. `plan_deployment` resolves a config against the
catalogues and the trained predictor into plain data a simulation (or a worker process) runs."""

import json
from dataclasses import asdict, dataclass, field

from vidur import _simulator
from vidur.cost_model import CostModelSpec, CpuOverheadConfig, build_cost_model
from vidur.errors import ContextTooLongError, DeploymentError
from vidur.gpus import get_gpu
from vidur.memory_plan import MemoryPlan, ReplicaShape, plan_memory
from vidur.models import get_model
from vidur.predictor import OperatorPredictor

POLICIES = ("sarathi", "vllm", "orca", "faster_transformer", "lightllm")
ROUTERS = ("round_robin", "least_outstanding", "random", "prefix_affinity")


@dataclass(frozen=True, slots=True)
class ReplicaConfig:
    """One replica: a model on `tensor_parallel` x `pipeline_parallel` GPUs. `gpu_price_per_hour`
    replaces the catalogue price. `allow_longer_context` lets the scheduler's `max_model_len`
    exceed the model's context (`max_position_embeddings`), as a model run with rope scaling
    does; without it such a `max_model_len` is refused, as the engine refuses it."""

    model: str = "meta-llama/Llama-2-7b-hf"
    gpu: str = "h100"
    tensor_parallel: int = 1
    pipeline_parallel: int = 1
    memory_utilization: float = 0.9
    gpu_price_per_hour: float | None = None
    """The exact number of KV blocks per replica (the engine's `--num-kv-blocks`); None: what
    the memory left after weights and activations holds."""
    num_kv_blocks: int | None = None
    allow_longer_context: bool = False


@dataclass(frozen=True, slots=True)
class ReplicaSchedulerConfig:
    """The replica scheduler's knobs, the engine's own (`python -m engine` takes the same): a
    knob left at None takes the scheduler core's default, as in the engine. `token_budget` is the
    most tokens of an iteration (the prefill chunk under `sarathi`; by default 512, and for
    policies that never chunk a whole max-length prompt); `max_model_len` defaults to the
    model's context length. `async_scheduling` (default on, as in the engine) schedules the
    next batch while the current one runs; as in the engine it applies to one pipeline stage
    only (a pipeline keeps one batch per stage in flight instead)."""

    policy: str | None = None
    token_budget: int | None = None
    max_num_seqs: int | None = None
    max_model_len: int | None = None
    block_size: int | None = None
    watermark: float | None = None
    enable_prefix_caching: bool | None = None
    order: str | None = None
    dynamic_chunking: tuple[int, int, int] | None = None
    max_decode_iters_between_prefills: int | None = None
    async_scheduling: bool | None = None

    def __post_init__(self) -> None:
        if self.policy is not None and self.policy not in POLICIES:
            raise DeploymentError(f"unknown scheduler policy {self.policy!r}; choose one of {', '.join(POLICIES)}")

    def resolve(
        self, max_model_len: int, num_blocks: int | None = None, pipeline_parallel: int = 1
    ) -> _simulator.SchedulerConfig:
        """The scheduler config these knobs make (defaults filled in by the scheduler core, the
        batches in flight as `python -m engine` sets them); raises DeploymentError naming a knob
        the scheduler refuses."""
        asynchronous = self.async_scheduling is not False and pipeline_parallel == 1
        in_flight = pipeline_parallel if pipeline_parallel > 1 else 2 if asynchronous else 1
        try:
            return _simulator.SchedulerConfig(
                policy=self.policy,
                token_budget=self.token_budget,
                max_num_seqs=self.max_num_seqs,
                max_model_len=max_model_len,
                block_size=self.block_size,
                num_blocks=num_blocks,
                watermark=self.watermark,
                enable_prefix_caching=self.enable_prefix_caching,
                order=self.order,
                dynamic_chunking=self.dynamic_chunking,
                max_decode_iters_between_prefills=self.max_decode_iters_between_prefills,
                async_scheduling=asynchronous,
                max_batches_in_flight=in_flight,
            )
        except _simulator.SchedulerError as error:
            raise DeploymentError(str(error)) from None


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    """`seed` drives the random router; nothing else in a simulation is random.
    `prefix_affinity` sends a request to the replica whose prefix cache holds the most of its
    prompt (then the least outstanding), or to the least outstanding while the busiest replica
    has more than 32 requests outstanding beyond the idlest; it needs
    `scheduler.enable_prefix_caching`."""

    num_replicas: int = 1
    router: str = "round_robin"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.num_replicas < 1:
            raise DeploymentError(f"num_replicas must be at least 1, got {self.num_replicas}")
        if self.router not in ROUTERS:
            raise DeploymentError(f"unknown router {self.router!r}; choose one of {', '.join(ROUTERS)}")
        if not 0 <= self.seed < 2**64:
            raise DeploymentError(f"seed must be in [0, 2**64), got {self.seed}")


@dataclass(frozen=True, slots=True)
class DeploymentConfig:
    replica: ReplicaConfig = field(default_factory=ReplicaConfig)
    scheduler: ReplicaSchedulerConfig = field(default_factory=ReplicaSchedulerConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    cpu_overheads: CpuOverheadConfig = field(default_factory=CpuOverheadConfig)

    def __post_init__(self) -> None:
        if self.cluster.router == "prefix_affinity" and not self.scheduler.enable_prefix_caching:
            raise DeploymentError(
                'cluster.router = "prefix_affinity" routes by the replicas\' prefix caches: '
                "it needs scheduler.enable_prefix_caching = true"
            )

    def as_dict(self) -> dict[str, object]:
        """JSON-ready (tuples as lists), so it compares equal after a round trip through a file."""
        return json.loads(json.dumps(asdict(self)))  # type: ignore[no-any-return]


@dataclass(frozen=True, slots=True)
class Deployment:
    """A resolved deployment: plain data, picklable, ready to simulate."""

    config: DeploymentConfig
    shape: ReplicaShape
    memory: MemoryPlan
    cost_model: CostModelSpec
    max_model_len: int
    token_budget: int
    block_size: int
    max_num_seqs: int

    @property
    def num_replicas(self) -> int:
        return self.config.cluster.num_replicas

    @property
    def num_gpus(self) -> int:
        return self.num_replicas * self.shape.num_gpus

    @property
    def cost_per_hour(self) -> float:
        return self.num_gpus * self.shape.gpu.price_per_hour

    def scheduler_config(self) -> _simulator.SchedulerConfig:
        return self.config.scheduler.resolve(
            self.max_model_len, self.memory.num_blocks, self.shape.pipeline_parallel
        )

    def describe(self) -> dict[str, object]:
        """What a run's summary records about the deployment."""
        shape = self.shape
        return {
            "config": self.config.as_dict(),
            "model": shape.model.name,
            "gpu": shape.gpu.name,
            "num_gpus": self.num_gpus,
            "cost_per_hour": self.cost_per_hour,
            "max_model_len": self.max_model_len,
            "token_budget": self.token_budget,
            "memory_per_gpu": self.memory.as_dict(),
            "predictor_sources": self.cost_model.sources(),
        }


def plan_deployment(config: DeploymentConfig, predictor: OperatorPredictor) -> Deployment:
    """Resolves the model and GPU, checks the parallel layout, plans memory and builds the cost
    model. Raises a `DeploymentError` subclass naming the problem for a deployment that cannot
    exist (unknown model or GPU, TP not dividing the heads, a model that does not fit)."""
    replica = config.replica
    model = get_model(replica.model)
    gpu = get_gpu(replica.gpu, replica.gpu_price_per_hour)
    shape = ReplicaShape(model, gpu, replica.tensor_parallel, replica.pipeline_parallel)
    max_model_len = config.scheduler.max_model_len or model.max_position_embeddings
    if max_model_len > model.max_position_embeddings and not replica.allow_longer_context:
        raise ContextTooLongError(
            f"scheduler.max_model_len={max_model_len} exceeds {model.name}'s context (max_position_embeddings "
            f"{model.max_position_embeddings}); set replica.allow_longer_context = true to run it longer, "
            "as with rope scaling"
        )
    scheduler = config.scheduler.resolve(max_model_len, pipeline_parallel=replica.pipeline_parallel)
    memory = plan_memory(
        shape,
        block_size=scheduler.block_size,
        max_batch_tokens=scheduler.token_budget,
        max_num_seqs=scheduler.max_num_seqs,
        max_model_len=max_model_len,
        memory_utilization=replica.memory_utilization,
        num_blocks=replica.num_kv_blocks,
    )
    cost_model = build_cost_model(shape, predictor, config.cpu_overheads, scheduler.token_budget)
    deployment = Deployment(
        config, shape, memory, cost_model, max_model_len, scheduler.token_budget, scheduler.block_size,
        scheduler.max_num_seqs,
    )
    deployment.scheduler_config()  # with the planned number of blocks
    return deployment
