"""Logprobs in the shapes of OpenAI's two endpoints: the completions API's parallel lists
(`tokens`, `token_logprobs`, `top_logprobs`, `text_offset`) and the chat API's `content` list of
`{token, logprob, bytes, top_logprobs}`. Token texts are each token decoded on its own, or
`token_id:N` (vLLM's `return_tokens_as_token_ids`)."""

from collections.abc import Callable, Sequence
from typing import Any

from engine.wire.step import TokenLogprobs
from engine.frontend.tokenizer import Tokenizer


def token_namer(tokenizer: Tokenizer, as_token_ids: bool) -> Callable[[int], str]:
    return (lambda token_id: f"token_id:{token_id}") if as_token_ids else tokenizer.token_text


def completion_logprobs(
    name: Callable[[int], str], token_ids: Sequence[int], logprobs: Sequence[TokenLogprobs | None], text_offset: int
) -> dict[str, Any]:
    """`logprobs[i]` is None where a token has none (the first prompt token, under echo). As
    vLLM does, each `top_logprobs` entry holds the chosen token beside the top alternatives."""
    texts = [name(token) for token in token_ids]
    offsets = []
    for text in texts:
        offsets.append(text_offset)
        text_offset += len(text)
    top: list[dict[str, float] | None] = []
    for token_text, entry in zip(texts, logprobs, strict=True):
        if entry is None:
            top.append(None)
            continue
        alternatives = {name(t): v for t, v in zip(entry.top_token_ids, entry.top_logprobs, strict=True)}
        top.append({token_text: entry.logprob, **alternatives})
    return {
        "tokens": texts,
        "token_logprobs": [None if entry is None else entry.logprob for entry in logprobs],
        "top_logprobs": top,
        "text_offset": offsets,
    }


def chat_logprobs(
    tokenizer: Tokenizer,
    name: Callable[[int], str],
    token_ids: Sequence[int],
    logprobs: Sequence[TokenLogprobs],
    num_top: int,
) -> dict[str, Any]:
    def token(token_id: int, logprob: float) -> dict[str, Any]:
        return {"token": name(token_id), "logprob": logprob, "bytes": list(tokenizer.token_bytes(token_id))}

    content = []
    for token_id, entry in zip(token_ids, logprobs, strict=True):
        alternatives = zip(entry.top_token_ids[:num_top], entry.top_logprobs[:num_top], strict=True)
        content.append({**token(token_id, entry.logprob), "top_logprobs": [token(t, v) for t, v in alternatives]})
    return {"content": content}
