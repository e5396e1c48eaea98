"""Prompt texts of a requested length.

With the target's tokenizer (a Hugging Face `tokenizer.json`), a prompt encodes to exactly the
requested number of tokens as a server counts them: the special tokens the tokenizer adds to
every text (a BOS token, say) included, so a 100-token prompt is 99 text tokens after a BOS. A
chat template's tokens are not counted (the target reports the server's own count where it
can).
Without one, a prompt is that many words of English prose, which most tokenizers turn into
roughly as many tokens: such prompts are marked inexact.

Each request's prompt starts at its own seeded place in the text, so prompts do not share
prefixes that a server's prefix cache could exploit, unless they are given one: `shared_prefix`
builds a system prompt of its own, and `build(..., prefix=...)` puts it (and `PREFIX_SEPARATOR`)
first, the requested length counting the whole prompt.
"""

from importlib import resources
from pathlib import Path

import msgspec
import numpy as np
from tokenizers import Tokenizer

_MAX_ADJUSTMENTS = 16
_MAX_STARTS = 8
PREFIX_SEPARATOR = "\n"


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

    def shared_prefix(self, num_tokens: int) -> Prompt:
        """The system prompt of a run: `num_tokens` tokens (exactly, with a tokenizer)."""
        return self._build(self._start(3, 0), num_tokens, "")

    def build(self, request_id: int, num_tokens: int, prefix: str = "") -> Prompt:
        """The prompt of request `request_id`: `num_tokens` tokens long (exactly, with a tokenizer),
        `prefix` and `PREFIX_SEPARATOR` first where a prefix is given."""
        return self._build(self._start(2, request_id), num_tokens, prefix + PREFIX_SEPARATOR if prefix else "")

    def count(self, text: str) -> int:
        """The tokens of `text` as a server counts them (its words, without a tokenizer)."""
        if self.tokenizer is None:
            return len(text.split())
        return len(self.tokenizer.encode(text, add_special_tokens=True).ids)

    def _start(self, stream: int, key: int) -> int:
        return int(np.random.default_rng([self.seed, stream, key]).integers(1 << 30))

    def _build(self, start: int, num_tokens: int, lead: str) -> Prompt:
        if num_tokens < 1:
            raise ValueError(f"a prompt needs at least 1 token, got {num_tokens}")
        if self.tokenizer is None:
            words = self._words
            num_words = max(1, num_tokens - len(lead.split()))
            text = " ".join(words[(start + i) % len(words)] for i in range(num_words))
            return Prompt(lead + text, len(lead.split()) + num_words, exact=False)
        num_lead_tokens = len(self.tokenizer.encode(lead, add_special_tokens=False).ids)
        num_text_tokens = num_tokens - self.num_added_tokens - num_lead_tokens
        if num_text_tokens < 1:
            text = self._exact(self.tokenizer, start, 1, lead) or ""
            return Prompt(lead + text, 1 + self.num_added_tokens + num_lead_tokens, exact=False)
        for attempt in range(_MAX_STARTS):
            text = self._exact(self.tokenizer, start + attempt, num_text_tokens, lead)
            if text is not None:
                return Prompt(lead + text, num_tokens, exact=True)
        raise ValueError(f"could not build a prompt of exactly {num_tokens} tokens with this tokenizer")

    def _exact(self, tokenizer: Tokenizer, start: int, num_tokens: int, lead: str = "") -> str | None:
        """A text of the corpus that adds `num_tokens` tokens after `lead` (None if none found)."""
        ids = self._corpus_ids
        num_lead_tokens = len(tokenizer.encode(lead, add_special_tokens=False).ids)
        length = num_tokens
        for _ in range(_MAX_ADJUSTMENTS):
            window = ids[(start + np.arange(length)) % len(ids)]
            text = tokenizer.decode(window.tolist())
            count = len(tokenizer.encode(lead + text, add_special_tokens=False).ids) - num_lead_tokens
            if count == num_tokens:
                return text
            length = max(1, length + num_tokens - count)
        return None
