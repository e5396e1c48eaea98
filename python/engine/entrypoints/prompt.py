"""Turning what a client sent into prompt token ids, off the event loop.

Tokenizing a long text takes a while (about 1 s per MB here), so it runs on a worker thread
(at most `max_concurrency` at once), and the loop keeps serving meanwhile. A text too long to
fit the model's context is refused before it is tokenized: a token covers at most
`Tokenizer.max_chars_per_token` characters, so a longer text cannot fit (and a JSON string
whose bytes say it is longer still is refused before it is even decoded). Where the tokenizer
may shorten text (a normalizer that strips or merges characters), only a bounded prefix is
tokenized to decide the same.
"""

from collections.abc import Sequence
from typing import Any

import msgspec
import trio

from engine.frontend.tokenizer import Tokenizer

# Tokenizing a prefix may merge fewer characters at its cut than the whole text does.
PREFIX_CUT_MARGIN_TOKENS = 16


# The most bytes one character takes in JSON (a `\uXXXX` escape).
MAX_JSON_BYTES_PER_CHAR = 6
# More than any chat message's keys and punctuation take besides its content.
MAX_JSON_MESSAGE_OVERHEAD_BYTES = 256


class PromptTooLongError(ValueError):
    pass


class PromptTokenizer:
    def __init__(self, tokenizer: Tokenizer, max_model_len: int, max_concurrency: int = 2):
        self.tokenizer = tokenizer
        self.max_model_len = max_model_len
        self._limiter = trio.CapacityLimiter(max_concurrency)
        self._max_chars = max_model_len * tokenizer.max_chars_per_token

    def check_json_size(self, prompt: msgspec.Raw | None, messages: msgspec.Raw | None) -> None:
        """Refuses, from the undecoded JSON alone, a prompt (text or list of texts) or chat
        messages that cannot fit the context, so a huge body costs no decoding of its text."""
        if self.tokenizer.may_shrink_text:
            return
        if prompt is not None:
            texts = msgspec.json.decode(prompt, type=list[msgspec.Raw]) if _starts(prompt, b"[") else [prompt]
            for text in texts:
                num_chars = (len(memoryview(text)) - 2) // MAX_JSON_BYTES_PER_CHAR
                if _starts(text, b'"') and num_chars > self._max_chars:
                    raise self._too_long(f"at least {num_chars} characters", f"at most {self._max_chars} characters")
        if messages is not None and _starts(messages, b"["):
            raw_messages = msgspec.json.decode(messages, type=list[msgspec.Raw])
            content_bytes = sum(max(0, len(memoryview(m)) - MAX_JSON_MESSAGE_OVERHEAD_BYTES) for m in raw_messages)
            if content_bytes // MAX_JSON_BYTES_PER_CHAR > self._max_chars:
                raise self._too_long(f"messages of at least {content_bytes // MAX_JSON_BYTES_PER_CHAR} characters",
                                     f"at most {self._max_chars} characters")

    async def encode(self, text: str, *, add_special_tokens: bool = True) -> list[int]:
        """The text's token ids; raises PromptTooLongError for a text that cannot fit the context."""
        if not text:
            raise ValueError("the prompt is empty")
        if len(text) > self._max_chars:
            if not self.tokenizer.may_shrink_text:
                raise self._too_long(f"{len(text)} characters", f"at most {self._max_chars} characters")
            prefix = await self._run(self.tokenizer.encode, text[: self._max_chars], add_special_tokens=False)
            if len(prefix) > self.max_model_len + PREFIX_CUT_MARGIN_TOKENS:
                raise self._too_long(f"more than {len(prefix)} tokens", "")
        ids: list[int] = await self._run(self.tokenizer.encode, text, add_special_tokens=add_special_tokens)
        return ids

    async def encode_chat(self, messages: Sequence[dict[str, Any]], *, add_generation_prompt: bool = True) -> list[int]:
        """The chat template rendered over `messages`, then tokenized (the template adds BOS)."""
        num_chars = sum(len(m["content"]) for m in messages)
        if num_chars > self._max_chars and not self.tokenizer.may_shrink_text:
            raise self._too_long(f"messages of {num_chars} characters", f"at most {self._max_chars} characters")
        text = await self._run(
            self.tokenizer.apply_chat_template, messages, add_generation_prompt=add_generation_prompt
        )
        return await self.encode(text, add_special_tokens=False)

    async def decode(self, token_ids: Sequence[int], *, skip_special_tokens: bool = True) -> str:
        text: str = await self._run(self.tokenizer.decode, token_ids, skip_special_tokens=skip_special_tokens)
        return text

    async def _run(self, function: Any, *args: Any, **kwargs: Any) -> Any:
        return await trio.to_thread.run_sync(lambda: function(*args, **kwargs), limiter=self._limiter)

    def _too_long(self, size: str, limit: str) -> PromptTooLongError:
        fits = f" ({limit} fit)" if limit else ""
        return PromptTooLongError(
            f"this model's maximum context length is {self.max_model_len} tokens, but the prompt has {size}{fits}"
        )



def _starts(raw: msgspec.Raw, prefix: bytes) -> bool:
    return memoryview(raw)[: len(prefix)] == prefix
