"""Turning what a client sent into prompt token ids."""

from collections.abc import Sequence

from engine.tokenizer import Tokenizer


def prompt_token_ids(tokenizer: Tokenizer, prompt: str | None, token_ids: Sequence[int] | None) -> list[int]:
    """Exactly one of `prompt` (text) and `token_ids` must be given; raises ValueError otherwise."""
    if prompt is None:
        if token_ids is None:
            raise ValueError("give exactly one of prompt and prompt_token_ids")
        return list(token_ids)
    if token_ids is not None:
        raise ValueError("give exactly one of prompt and prompt_token_ids")
    if not prompt:
        raise ValueError("the prompt is empty")
    return tokenizer.encode(prompt)
