"""The response bodies of one completion or chat completion: the whole reply, and the stream of
server-sent events (one chunk per sample event, choices told apart by `index`)."""

import time
from typing import Any

import msgspec

from engine.frontend.request_stream import RequestOutcome, TokenDelta
from engine.entrypoints.openai.completion_call import Prompt, Sample
from engine.entrypoints.openai.logprobs import chat_logprobs, completion_logprobs, token_namer
from engine.wire.step import TokenLogprobs
from engine.frontend.tokenizer import Tokenizer


class ReplyShape:
    """`logprobs`: how many alternatives the client asked for (None: no logprobs); `echo`
    (completions only): the prompt's text (and logprobs) come first."""

    def __init__(
        self,
        *,
        reply_id: str,
        model: str,
        tokenizer: Tokenizer,
        chat: bool,
        num_choices: int,
        logprobs: int | None,
        echo: bool,
        report_cached_tokens: bool,
        tokens_as_ids: bool = False,
    ):
        self.chat = chat
        self.num_choices = num_choices
        self.logprobs = logprobs
        self.echo = echo
        self._tokenizer = tokenizer
        self._name = token_namer(tokenizer, tokens_as_ids)
        self._report_cached_tokens = report_cached_tokens
        self._id = reply_id
        self._model = model
        self._created = int(time.time())

    def header(self, *, chunk: bool) -> dict[str, Any]:
        if self.chat:
            kind = "chat.completion.chunk" if chunk else "chat.completion"
        else:
            kind = "text_completion"
        return {"id": self._id, "object": kind, "created": self._created, "model": self._model}

    def choice_index(self, sample: Sample) -> int:
        return sample.prompt_index * self.num_choices + sample.sample_index

    def usage(self, prompts: list[Prompt], samples: list[Sample], num_output_tokens: int) -> dict[str, Any]:
        num_prompt_tokens = sum(len(p.token_ids) for p in prompts)
        usage: dict[str, Any] = {
            "prompt_tokens": num_prompt_tokens,
            "completion_tokens": num_output_tokens,
            "total_tokens": num_prompt_tokens + num_output_tokens,
        }
        if self._report_cached_tokens:
            cached = sum(s.outcome.num_cached_tokens for s in samples if s.sample_index == 0 and s.outcome)
            usage["prompt_tokens_details"] = {"cached_tokens": cached}
        return usage

    def choice_logprobs(
        self, prompt: Prompt | None, sample: Sample, token_ids: list[int], logprobs: list[TokenLogprobs]
    ) -> dict[str, Any] | None:
        """The logprobs of `token_ids` (the sample's, or the part of them in one event), led by
        the prompt's under echo (`prompt` given); text offsets continue the sample's earlier ones."""
        if self.logprobs is None:
            return None
        if self.chat:
            return chat_logprobs(self._tokenizer, self._name, token_ids, logprobs, self.logprobs)
        all_ids: list[int] = list(token_ids)
        all_logprobs: list[TokenLogprobs | None] = list(logprobs)
        if prompt is not None:
            prompt_logprobs = sample.prompt_logprobs or [None] * len(prompt.token_ids)
            all_ids = prompt.token_ids + all_ids
            all_logprobs = list(prompt_logprobs) + all_logprobs
        found = completion_logprobs(self._name, all_ids, all_logprobs, sample.logprob_text_offset)
        sample.logprob_text_offset += sum(len(text) for text in found["tokens"])
        return found

    # ----- the whole reply -----

    def whole(
        self, prompts: list[Prompt], chosen: list[Sample], samples: list[Sample], echo_texts: list[str]
    ) -> dict[str, Any]:
        """`chosen`: one sample per choice, in choice order (under best_of, fewer than `samples`)."""
        choices = []
        for index, sample in enumerate(chosen):
            outcome = sample.outcome
            if outcome is None:
                raise ValueError("a sample without an outcome")
            text = "".join(sample.text)
            choice: dict[str, Any] = {"index": index, "finish_reason": outcome.finish_reason}
            if self.chat:
                choice["message"] = {"role": "assistant", "content": text}
                choice["logprobs"] = self.choice_logprobs(None, sample, sample.token_ids, sample.logprobs)
            else:
                prompt = sample.prompt if self.echo else None
                choice["text"] = (echo_texts[sample.prompt_index] if self.echo else "") + text
                choice["logprobs"] = self.choice_logprobs(prompt, sample, sample.token_ids, sample.logprobs)
                choice["stop_reason"] = None
            choices.append(choice)
        num_output_tokens = sum(len(s.token_ids) for s in samples)
        return {**self.header(chunk=False), "choices": choices, "usage": self.usage(prompts, samples, num_output_tokens)}

    # ----- streaming -----

    def role_chunks(self, num_choices: int) -> list[bytes]:
        delta = {"role": "assistant", "content": ""}
        return [
            self.event({**self.header(chunk=True),
                        "choices": [{"index": i, "delta": delta, "logprobs": None, "finish_reason": None}]})
            for i in range(num_choices)
        ] if self.chat else []

    def chunk(
        self,
        sample: Sample,
        event: TokenDelta | RequestOutcome,
        echo_text: str | None,
        usage: dict[str, Any] | None,
    ) -> bytes:
        """One event of one sample; `echo_text` leads the sample's first chunk under echo."""
        if isinstance(event, TokenDelta):
            text, finish_reason, token_ids, logprobs = event.text, None, event.token_ids, event.logprobs or []
        else:
            text, finish_reason, token_ids, logprobs = event.text, event.finish_reason, [], []
        prompt = sample.prompt if echo_text is not None else None
        has_tokens = bool(token_ids) or prompt is not None
        choice: dict[str, Any] = {"index": self.choice_index(sample), "finish_reason": finish_reason}
        if self.chat:
            choice["delta"] = {"content": text}
        else:
            choice["text"] = (echo_text or "") + text
        choice["logprobs"] = self.choice_logprobs(prompt, sample, token_ids, logprobs) if has_tokens else None
        body: dict[str, Any] = {**self.header(chunk=True), "choices": [choice]}
        if usage is not None:
            body["usage"] = usage
        return self.event(body)

    def usage_chunk(self, usage: dict[str, Any]) -> bytes:
        return self.event({**self.header(chunk=True), "choices": [], "usage": usage})

    @staticmethod
    def event(body: object) -> bytes:
        return b"data: " + msgspec.json.encode(body) + b"\n\n"

    @staticmethod
    def error_event(message: str, code: str) -> bytes:
        error = {"message": message, "type": "server_error", "param": None, "code": code}
        return ReplyShape.event({"error": error})

