"""Greedy tokens served by the whole engine (socket, scheduler, worker, sampling) equal Hugging
Face transformers' greedy generation on the same weights, also when requests share batches."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from support.engine_server import RunningServer, start_server
from support.hf_reference import hf_greedy
from support.served_greedy import served_greedy

PROMPTS = [[3, 17, 42, 99, 7], list(range(10, 40)), [5] * 3, list(range(200, 290, 3))]
NEW_TOKENS = 12

VARIANTS = {"reference": ["--attention-backend", "reference"], "synchronous": ["--no-async-scheduling"]}


@pytest.fixture(params=["default", *VARIANTS])
def served_by(request: pytest.FixtureRequest, server: RunningServer, tiny_model_dir: Path) -> Iterator[RunningServer]:
    """The shared server (defaults: async scheduling, `--attention-backend auto`), one with
    `--attention-backend reference`, and one scheduling each step after the previous finished."""
    if request.param == "default":
        yield server
        return
    variant = start_server(tiny_model_dir, "--num-kv-blocks", "128", *VARIANTS[request.param])
    yield variant
    variant.stop()


async def test_concurrent_greedy_requests_match_transformers(served_by: RunningServer, tiny_model_dir: Path) -> None:
    served = await served_greedy(served_by, PROMPTS, NEW_TOKENS)
    expected = {index: hf_greedy(tiny_model_dir, prompt, NEW_TOKENS) for index, prompt in enumerate(PROMPTS)}
    assert served == expected
