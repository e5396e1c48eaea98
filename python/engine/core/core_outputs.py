"""Collects what the core tells the front-end after a step (or after requests ended outside
one) into one `CoreOutputs`: the tokens as columns, the requests that finished, the figures of
the steps completed since the last message, and the scheduler's load."""

from engine.scheduler import RecordedTokens
from engine.wire.core_messages import CoreOutputs, FinishedOutput, IterationStats, RejectedRequest, SchedulerLoad
from engine.wire.step import PromptLogprobs, TokenLogprobs

_NO_TOKENS = b""


class OutputsBuilder:
    def __init__(self) -> None:
        self._time = 0.0
        self._ids = self._token_ids = self._ttfts = self._tbts = _NO_TOKENS
        self._logprobs: list[TokenLogprobs | None] = []
        self._prompt_logprobs: list[PromptLogprobs] = []
        self._finished: list[FinishedOutput] = []
        self._iterations: list[IterationStats] = []
        self._rejected: list[RejectedRequest] = []

    @property
    def has_news(self) -> bool:
        return bool(self._finished or self._iterations or self._ids or self._rejected)

    def tokens(
        self,
        time: float,
        recorded: RecordedTokens,
        logprobs: list[TokenLogprobs | None],
        prompt_logprobs: list[PromptLogprobs],
    ) -> None:
        """One step's tokens (a message carries one step's)."""
        self._time = time
        self._ids, self._token_ids = recorded.ids, recorded.token_ids
        self._ttfts, self._tbts = recorded.ttfts, recorded.tbts
        self._logprobs = logprobs
        self._prompt_logprobs = prompt_logprobs

    def finished(self, request_id: int, reason: str, **times_and_counts: float) -> None:
        self._finished.append(FinishedOutput(request_id, reason, **times_and_counts))  # type: ignore[arg-type]

    def rejected(self, request_id: int, message: str) -> None:
        self._rejected.append(RejectedRequest(request_id, message))

    def iteration(self, stats: IterationStats) -> None:
        """A step completed since the last message, its host time measured to the end."""
        self._iterations.append(stats)

    def take(self, load: SchedulerLoad) -> CoreOutputs:
        outputs = CoreOutputs(
            time=self._time,
            ids=self._ids,
            token_ids=self._token_ids,
            logprobs=self._logprobs,
            prompt_logprobs=self._prompt_logprobs,
            ttfts=self._ttfts,
            tbts=self._tbts,
            finished=self._finished,
            iterations=self._iterations,
            load=load,
            rejected=self._rejected,
        )
        self._ids = self._token_ids = self._ttfts = self._tbts = _NO_TOKENS
        self._logprobs, self._prompt_logprobs, self._finished, self._iterations = [], [], [], []
        self._rejected = []
        return outputs
