"""Prompt texts of a requested length.

With the target's tokenizer (a Hugging Face `tokenizer.json`), a prompt encodes to exactly the
requested number of tokens as a server counts them: the special tokens the tokenizer adds to
every text (a BOS token, say) included, so a 100-token prompt is 99 text tokens after a BOS. A
chat template's tokens are not counted (the target reports the server's own count where it
can).
Without one, a prompt is that many words of English prose, which most tokenizers turn into
roughly as many tokens: such prompts are marked inexact.

Each request's prompt starts at its own seeded place in the text, so prompts do not share
prefixes that a server's prefix cache could exploit.
"""

from importlib import resources
from pathlib import Path

import msgspec
import numpy as np
from tokenizers import Tokenizer

_MAX_ADJUSTMENTS = 16
_MAX_STARTS = 8


class Prompt(msgspec.Struct, frozen=True):
    text: str
    num_tokens: int
    exact: bool


def load_corpus() -> str:
    return resources.files("metron").joinpath("corpus.txt").read_text()


def load_tokenizer(path: str | Path) -> Tokenizer:
    """A Hugging Face tokenizer from its `tokenizer.json` (or a directory holding one)."""
    path = Path(path)
    if path.is_dir():
        path = path / "tokenizer.json"
    if not path.is_file():
        raise ValueError(f"tokenizer file {path} does not exist")
    try:
        return Tokenizer.from_file(str(path))
    except Exception as error:
        raise ValueError(f"{path} is not a Hugging Face tokenizer.json: {error}") from error


class PromptBuilder:
    def __init__(self, tokenizer: Tokenizer | None = None, seed: int = 0) -> None:
        self.tokenizer = tokenizer
        self.seed = seed
        corpus = load_corpus()
        if tokenizer is None:
            self._words = corpus.split()
        else:
            self._corpus_ids = np.array(tokenizer.encode(corpus, add_special_tokens=False).ids)
            if len(self._corpus_ids) < 2:
                raise ValueError("the tokenizer turns the prompt corpus into fewer than 2 tokens")
            self.num_added_tokens = len(tokenizer.encode("", add_special_tokens=True).ids)

    def build(self, request_id: int, num_tokens: int) -> Prompt:
        """The prompt of request `request_id`: `num_tokens` tokens long (exactly, with a tokenizer)."""
        if num_tokens < 1:
            raise ValueError(f"a prompt needs at least 1 token, got {num_tokens}")
        start = int(np.random.default_rng([self.seed, 2, request_id]).integers(1 << 30))
        if self.tokenizer is None:
            words = self._words
            text = " ".join(words[(start + i) % len(words)] for i in range(num_tokens))
            return Prompt(text, num_tokens, exact=False)
        num_text_tokens = num_tokens - self.num_added_tokens
        if num_text_tokens < 1:
            text = self._exact(self.tokenizer, start, 1) or ""
            return Prompt(text, 1 + self.num_added_tokens, exact=False)
        for attempt in range(_MAX_STARTS):
            text = self._exact(self.tokenizer, start + attempt, num_text_tokens)
            if text is not None:
                return Prompt(text, num_tokens, exact=True)
        raise ValueError(f"could not build a prompt of exactly {num_tokens} tokens with this tokenizer")

    def _exact(self, tokenizer: Tokenizer, start: int, num_tokens: int) -> str | None:
        ids = self._corpus_ids
        length = num_tokens
        for _ in range(_MAX_ADJUSTMENTS):
            window = ids[(start + np.arange(length)) % len(ids)]
            text = tokenizer.decode(window.tolist())
            count = len(tokenizer.encode(text, add_special_tokens=False).ids)
            if count == num_tokens:
                return text
            length = max(1, length + num_tokens - count)
        return None
