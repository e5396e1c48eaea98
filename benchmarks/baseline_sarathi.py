"""A plain-Python `sarathi` scheduler, written only as the baseline of scheduler_overhead.py.

It makes the same decisions as the Rust policy for length-only requests (no prefix caching):
decodes first (preempting the newest when blocks run out), then unfinished prefill chunks,
then FCFS admissions under the token budget with blocks reserved for the prompt.
"""

from collections import deque
from dataclasses import dataclass, field


@dataclass(slots=True)
class Request:
    id: int
    num_prompt_tokens: int
    max_new_tokens: int
    num_output_tokens: int = 0
    num_computed_tokens: int = 0
    block_ids: list[int] = field(default_factory=list)

    @property
    def num_tokens(self) -> int:
        return self.num_prompt_tokens + self.num_output_tokens

    @property
    def is_prefill(self) -> bool:
        return self.num_output_tokens == 0 or self.num_tokens - self.num_computed_tokens > 1


@dataclass(slots=True)
class Scheduled:
    request: Request
    num_tokens: int
    produces_token: bool
    new_block_ids: list[int]


class PythonSarathiScheduler:
    def __init__(self, *, token_budget: int, max_num_seqs: int, block_size: int, num_blocks: int, watermark: float):
        self.token_budget = token_budget
        self.max_num_seqs = max_num_seqs
        self.block_size = block_size
        self.free_blocks = list(range(num_blocks - 1, -1, -1))
        self.watermark_blocks = int(watermark * num_blocks)
        self.waiting: deque[Request] = deque()
        self.running: list[Request] = []

    def add_request(self, request_id: int, prompt_len: int, max_new_tokens: int) -> None:
        self.waiting.append(Request(request_id, prompt_len, max_new_tokens))

    def _blocks_for(self, num_tokens: int) -> int:
        return -(-num_tokens // self.block_size)

    def _preempt(self, request: Request, preempted: list[int]) -> None:
        self.running.remove(request)
        self.free_blocks.extend(reversed(request.block_ids))
        request.block_ids = []
        request.num_computed_tokens = 0
        self.waiting.appendleft(request)
        preempted.append(request.id)

    def schedule(self) -> tuple[list[Scheduled], list[int]]:
        batch: list[Scheduled] = []
        preempted: list[int] = []
        prefills: list[Request] = []
        index = 0
        while index < len(self.running):
            request = self.running[index]
            if request.is_prefill:
                prefills.append(request)
                index += 1
                continue
            new_blocks: list[int] = []
            while len(request.block_ids) * self.block_size < request.num_tokens:
                if self.free_blocks:
                    block = self.free_blocks.pop()
                    request.block_ids.append(block)
                    new_blocks.append(block)
                elif self.running[-1] is not request:
                    self._preempt(self.running[-1], preempted)
                else:
                    self._preempt(request, preempted)
                    break
            else:
                batch.append(Scheduled(request, 1, True, new_blocks))
                index += 1
        num_batched = len(batch)
        for request in prefills:
            chunk = min(request.num_tokens - request.num_computed_tokens, self.token_budget - num_batched)
            if chunk > 0:
                produces = request.num_computed_tokens + chunk == request.num_tokens
                batch.append(Scheduled(request, chunk, produces, []))
                num_batched += chunk
        while self.waiting and len(self.running) < self.max_num_seqs and num_batched < self.token_budget:
            request = self.waiting[0]
            needed = self._blocks_for(request.num_tokens)
            if len(self.free_blocks) - needed < self.watermark_blocks:
                break
            self.waiting.popleft()
            request.block_ids = [self.free_blocks.pop() for _ in range(needed)]
            self.running.append(request)
            chunk = min(request.num_tokens, self.token_budget - num_batched)
            batch.append(Scheduled(request, chunk, chunk == request.num_tokens, list(request.block_ids)))
            num_batched += chunk
        return batch, preempted

    def update(self, batch: list[Scheduled], sampled_token_ids: list[int]) -> list[int]:
        finished: list[int] = []
        tokens = iter(sampled_token_ids)
        for scheduled in batch:
            request = scheduled.request
            request.num_computed_tokens += scheduled.num_tokens
            if scheduled.produces_token:
                next(tokens)
                request.num_output_tokens += 1
                if request.num_output_tokens >= request.max_new_tokens:
                    finished.append(request.id)
                    self.free_blocks.extend(reversed(request.block_ids))
                    request.block_ids = []
        if finished:
            done = set(finished)
            self.running = [r for r in self.running if r.id not in done]
        return finished
