"""Load profiles (GuideLLM's set): which runs a benchmark makes, and the load of each.

    synchronous   one request at a time
    concurrent    a closed loop at each concurrency level
    throughput    every request at once: as fast as the target takes them
    constant      even gaps at `rate` requests/s
    poisson       Poisson arrivals at `rate` requests/s
    sweep         synchronous, then throughput, then `num_sweep_rates` constant rates evenly spaced
                  strictly between the two request throughputs they measured

Each level is one run of the same workload (lengths, counts, seed); only its arrivals and
concurrency limit change. Plain data, no networking.
"""

import msgspec
import numpy as np

from metron.arrivals import ArrivalConfig
from metron.runner import RunConfig

PROFILES = ("synchronous", "concurrent", "throughput", "constant", "poisson", "sweep")


class ProfileConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`concurrencies`: the levels of `concurrent`; `rate`: requests/s of `constant` and
    `poisson`; `num_sweep_rates`: the rates `sweep` runs between its two bounds."""

    kind: str
    concurrencies: tuple[int, ...] = ()
    rate: float = 1.0
    num_sweep_rates: int = 5

    def __post_init__(self) -> None:
        if self.kind not in PROFILES:
            raise ValueError(f"unknown profile {self.kind!r} (--profile); choose one of {', '.join(PROFILES)}")
        if self.kind == "concurrent" and not self.concurrencies:
            raise ValueError("profile concurrent needs at least one level (--concurrency N[,N...])")
        if self.concurrencies and self.kind != "concurrent":
            raise ValueError(f"--concurrency is for profile concurrent, not {self.kind}")
        if any(level < 1 for level in self.concurrencies):
            raise ValueError(f"every concurrency level must be at least 1 (--concurrency), got {self.concurrencies}")
        if len(set(self.concurrencies)) != len(self.concurrencies):
            raise ValueError(f"concurrency levels repeat (--concurrency): {self.concurrencies}")
        if self.kind in ("constant", "poisson") and not (self.rate > 0 and np.isfinite(self.rate)):
            raise ValueError(f"profile {self.kind} needs a positive --rate in requests/s, got {self.rate}")
        if self.num_sweep_rates < 1:
            raise ValueError(f"--sweep-rates must be at least 1, got {self.num_sweep_rates}")


class Level(msgspec.Struct, frozen=True, kw_only=True):
    """One run of a profile. `rate`: the requested requests/s (None where the load is set by
    concurrency or by the target); `concurrency`: the closed loop's limit (None when open)."""

    name: str
    profile: str
    rate: float | None = None
    concurrency: int | None = None


SYNCHRONOUS = Level(name="synchronous", profile="synchronous", concurrency=1)
THROUGHPUT = Level(name="throughput", profile="throughput")


def rate_level(profile: str, rate: float) -> Level:
    return Level(name=f"rate-{rate:.4g}", profile=profile, rate=float(f"{rate:.4g}"))


def planned_levels(config: ProfileConfig) -> list[Level]:
    """Every level of a profile other than sweep, in run order; a sweep's first two."""
    match config.kind:
        case "synchronous":
            return [SYNCHRONOUS]
        case "concurrent":
            return [Level(name=f"concurrent-{n}", profile="concurrent", concurrency=n) for n in config.concurrencies]
        case "throughput":
            return [THROUGHPUT]
        case "constant" | "poisson":
            return [rate_level(config.kind, config.rate)]
        case _:
            return [SYNCHRONOUS, THROUGHPUT]


def sweep_levels(synchronous_rate: float, throughput_rate: float, num_rates: int) -> list[Level]:
    """`num_rates` constant-rate levels evenly spaced strictly between the measured request
    throughputs of the synchronous and throughput runs (rates that round alike run once)."""
    if not (synchronous_rate > 0 and throughput_rate > 0):
        raise ValueError(
            f"a sweep needs both bounds measured: synchronous {synchronous_rate:g} req/s, "
            f"throughput {throughput_rate:g} req/s"
        )
    low, high = sorted((synchronous_rate, throughput_rate))
    levels = [rate_level("constant", rate) for rate in np.linspace(low, high, num_rates + 2)[1:-1]]
    return list({level.name: level for level in levels}.values())


def level_config(base: RunConfig, level: Level) -> RunConfig:
    """The base run with this level's arrivals and concurrency limit."""
    workload = base.workload
    if level.rate is None:
        arrivals = ArrivalConfig(kind="static")
    else:
        arrivals = ArrivalConfig(kind="poisson" if level.profile == "poisson" else "constant", rate=level.rate)
    load = msgspec.structs.replace(base.load, max_concurrency=level.concurrency)
    return msgspec.structs.replace(base, workload=msgspec.structs.replace(workload, arrivals=arrivals), load=load)
