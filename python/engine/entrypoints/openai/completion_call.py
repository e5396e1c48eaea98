"""The engine requests behind one completion call: one per sample (`n`, or `best_of`) of each
prompt, their events merged in arrival order, every one aborted when the call ends early.

With prefix caching on, the first sample of a prompt runs alone until its first token; the
others start then and find the prompt's KV blocks in the cache, so `n` samples prefill the
prompt once (only the last partial block is computed again). A seeded call gives sample `i`
the seed `seed + i` (vLLM's rule), so its samples differ and each is reproducible.
"""

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import msgspec
import trio

from engine.frontend.engine_client import EngineClient
from engine.errors import EngineFailedError
from engine.frontend.request_stream import RequestOutcome, RequestStream, TokenDelta
from engine.wire.sampling_params import SamplingParams
from engine.wire.step import TokenLogprobs

Event = TokenDelta | RequestOutcome | EngineFailedError


@dataclass(slots=True)
class Prompt:
    token_ids: list[int]
    """The prompt as the client sent it, when it was text (for `echo`)."""
    text: str | None = None


@dataclass(slots=True)
class Sample:
    """One engine request of the call and what it produced so far."""

    prompt_index: int
    sample_index: int
    prompt: Prompt
    request_id: int | None = None
    stream: RequestStream | None = None
    text: list[str] = field(default_factory=list)
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[TokenLogprobs] = field(default_factory=list)
    prompt_logprobs: list[TokenLogprobs | None] | None = None
    outcome: RequestOutcome | None = None
    failure: str | None = None
    """Characters of the token texts whose logprobs were already reported (completions' text_offset)."""
    logprob_text_offset: int = 0

    @property
    def cumulative_logprob(self) -> float:
        return sum(entry.logprob for entry in self.logprobs)

    def record(self, event: Event) -> None:
        if isinstance(event, TokenDelta):
            self.text.append(event.text)
            self.token_ids.extend(event.token_ids)
            self.logprobs.extend(event.logprobs or [])
            if event.prompt_logprobs is not None:
                self.prompt_logprobs = event.prompt_logprobs
        elif isinstance(event, RequestOutcome):
            self.text.append(event.text)
            self.outcome = event
        else:
            self.failure = str(event)


class CompletionCall:
    def __init__(self, engine: EngineClient, prompts: list[Prompt], params: SamplingParams, num_samples: int):
        self._engine = engine
        self._params = params
        self._share_prefix = engine.config.enable_prefix_caching and num_samples > 1
        self.prompts = prompts
        self.samples = [Sample(p, s, prompt) for p, prompt in enumerate(prompts) for s in range(num_samples)]

    def submit_first(self) -> None:
        """Checks every prompt, then submits each prompt's first sample (all samples when their
        prefixes are not shared). Raises what `EngineClient.submit` raises, with nothing submitted."""
        for prompt in self.prompts:
            self._engine.check(prompt.token_ids, self._params)
        for sample in self.samples:
            if sample.sample_index == 0 or not self._share_prefix:
                self._submit(sample)

    def _submit(self, sample: Sample) -> None:
        params = self._params
        if params.seed is not None and sample.sample_index:
            params = msgspec.structs.replace(params, seed=(params.seed + sample.sample_index) % 2**63)
        try:
            sample.request_id, sample.stream = self._engine.submit(sample.prompt.token_ids, params)
        except BaseException:
            self.abort()
            raise

    @asynccontextmanager
    async def events(self) -> AsyncIterator[trio.MemoryReceiveChannel[tuple[Sample, Event]]]:
        """Every sample's events (each sample's own in order) until all are done; leaving the
        block early aborts the samples still running. The block must not raise (a nursery
        would wrap its exception in a group)."""
        send, receive = trio.open_memory_channel[tuple[Sample, Event]](len(self.samples) * 4)
        try:
            async with trio.open_nursery() as nursery:
                async with send:
                    for prompt_index in range(len(self.prompts)):
                        nursery.start_soon(self._pump_prompt, prompt_index, send.clone())
                try:
                    async with receive:
                        yield receive
                finally:
                    nursery.cancel_scope.cancel()
        finally:
            self.abort()

    async def _pump_prompt(self, prompt_index: int, send: trio.MemorySendChannel[tuple[Sample, Event]]) -> None:
        samples = [s for s in self.samples if s.prompt_index == prompt_index]
        async with send, trio.open_nursery() as nursery:
            if samples[0].stream is None or all(s.stream is not None for s in samples):
                for sample in samples:
                    nursery.start_soon(self._pump, sample, send.clone(), None)
                return
            first_event = trio.Event()
            nursery.start_soon(self._pump, samples[0], send.clone(), first_event.set)
            await first_event.wait()
            for sample in samples[1:]:
                try:
                    self._submit(sample)
                except EngineFailedError as error:
                    await send.send((sample, error))
                    continue
                nursery.start_soon(self._pump, sample, send.clone(), None)

    async def _pump(
        self,
        sample: Sample,
        send: trio.MemorySendChannel[tuple[Sample, Event]],
        on_first_event: Callable[[], None] | None,
    ) -> None:
        if sample.stream is None:
            return
        async with send:
            try:
                async for event in sample.stream:
                    if on_first_event is not None:
                        on_first_event()
                        on_first_event = None
                    await send.send((sample, event))
            except EngineFailedError as error:
                await send.send((sample, error))
            finally:
                if on_first_event is not None:
                    on_first_event()

    def abort(self) -> None:
        for sample in self.samples:
            if sample.request_id is not None and sample.stream is not None and not sample.stream.is_done:
                self._engine.abort(sample.request_id)
