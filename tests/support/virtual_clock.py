"""metron's run against a simulated target, on a virtual clock: it takes simulated time, not wall time."""

import trio
import trio.testing
from metron.runner import RunConfig, RunOutcome, measure
from metron.targets.base import Target


def measure_on_a_virtual_clock(config: RunConfig, target: Target) -> RunOutcome:
    async def run() -> RunOutcome:
        async with target:
            return await measure(config, target)

    return trio.run(run, clock=trio.testing.MockClock(autojump_threshold=0))
