"""Turns a growing list of token ids into text deltas that are always valid UTF-8, and cuts the
text at stop strings.

Byte-level tokenizers split multi-byte characters across tokens; the tokenizer's incremental
decoder releases text only once its characters are complete, continuing from the prompt's last
tokens so that merges across the boundary decode as in a full decode. Text that might be the
beginning of a stop string is held back until it is known not to be one. Stop strings are
looked for only once `min_tokens` tokens were added (vLLM's rule); a stop string that begins
in text released before then is not found.
"""

from collections.abc import Sequence

from engine.frontend.tokenizer import Tokenizer

# Prompt tokens the decoder starts from, so the first output token decodes in context.
CONTEXT_TOKENS = 5


class IncrementalDetokenizer:
    def __init__(
        self,
        tokenizer: Tokenizer,
        prompt_token_ids: Sequence[int],
        stop: Sequence[str] = (),
        *,
        min_tokens: int = 0,
        skip_special_tokens: bool = True,
    ):
        self._decoder = tokenizer.decode_stream(
            prompt_token_ids[-CONTEXT_TOKENS:], skip_special_tokens=skip_special_tokens
        )
        self._stop = tuple(stop)
        self._hold_back = max((len(s) for s in self._stop), default=1) - 1
        self._min_tokens = min_tokens
        self._num_tokens = 0
        self.text = ""  # all finalized output text so far (before any stop string)
        self._emitted = 0
        self.stopped_by: str | None = None

    def add_token(self, token_id: int) -> str:
        """Adds one output token; returns the new text that is safe to show (maybe empty)."""
        if self.stopped_by is not None:
            return ""
        self._num_tokens += 1
        self.text += self._decoder.step(token_id)
        if self._num_tokens < self._min_tokens:
            return self.flush()
        return self._release()

    def flush(self) -> str:
        """At the end of a request: everything not yet emitted (nothing past a stop string)."""
        delta = self.text[self._emitted :]
        self._emitted = len(self.text)
        return delta

    def _release(self) -> str:
        if self._stop:
            # Text already emitted was checked when it was emitted, with the whole stop window.
            search_from = self._emitted
            cut = min(
                ((index, stop) for stop in self._stop if (index := self.text.find(stop, search_from)) >= 0),
                default=None,
            )
            if cut is not None:
                index, self.stopped_by = cut
                self.text = self.text[:index]
                return self.flush()
        safe_end = max(self._emitted, len(self.text) - self._hold_back)
        delta = self.text[self._emitted : safe_end]
        self._emitted = safe_end
        return delta
