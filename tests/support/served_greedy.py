"""Greedy outputs from a running engine: every prompt sent at once over the RPC client."""

from collections.abc import Sequence

import trio

from engine.client import SamplingParams, connect
from support.engine_server import RunningServer


async def served_greedy(server: RunningServer, prompts: Sequence[list[int]], new_tokens: int) -> dict[int, list[int]]:
    """Each prompt's `new_tokens` greedy tokens (EOS ignored), by prompt index."""
    sampling = SamplingParams(max_tokens=new_tokens, temperature=0.0, ignore_eos=True)
    served: dict[int, list[int]] = {}
    async with connect(server.host, server.rpc_port) as client:

        async def run(index: int) -> None:
            _, token_ids, _ = await client.complete(sampling=sampling, prompt_token_ids=prompts[index])
            served[index] = token_ids

        async with trio.open_nursery() as nursery:
            for index in range(len(prompts)):
                nursery.start_soon(run, index)
    return served
