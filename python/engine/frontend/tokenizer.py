"""A model's tokenizer, read from its Hugging Face files (`tokenizer.json`, `tokenizer_config.json`)."""

import functools
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jinja2.sandbox
from tokenizers import Tokenizer as FastTokenizer
from tokenizers.decoders import DecodeStream


class ChatTemplateError(ValueError):
    """The messages could not be rendered with the model's chat template."""


def _raise_exception(message: str) -> None:
    raise ChatTemplateError(message)


def _special_token_text(value: object) -> str | None:
    if isinstance(value, dict):
        content = value.get("content")
        return content if isinstance(content, str) else None
    return value if isinstance(value, str) else None


class Tokenizer:
    def __init__(self, model_dir: Path):
        path = model_dir / "tokenizer.json"
        if not path.is_file():
            raise ValueError(f"no tokenizer.json in {model_dir}")
        self._tokenizer = FastTokenizer.from_file(str(path))
        config_path = model_dir / "tokenizer_config.json"
        config: dict[str, Any] = json.loads(config_path.read_text()) if config_path.is_file() else {}
        self.bos_token = _special_token_text(config.get("bos_token"))
        self.eos_token = _special_token_text(config.get("eos_token"))
        self._chat_template = config.get("chat_template")
        if isinstance(self._chat_template, list):  # named templates: use the default one
            named = {t.get("name"): t.get("template") for t in self._chat_template}
            self._chat_template = named.get("default")
        self._add_bos = bool(config.get("add_bos_token", False))
        self.vocab_size = self._tokenizer.get_vocab_size(with_added_tokens=True)
        vocab = self._tokenizer.get_vocab(with_added_tokens=True)
        self.max_chars_per_token = max(1, max(map(len, vocab), default=1))
        pipeline = json.loads(path.read_text())
        self.may_shrink_text = _may_shrink_text(pipeline)
        self._byte_level = _uses_byte_level(pipeline.get("decoder"))

    @property
    def has_chat_template(self) -> bool:
        return isinstance(self._chat_template, str)

    def encode(self, text: str, *, add_special_tokens: bool = True) -> list[int]:
        ids: list[int] = self._tokenizer.encode(text, add_special_tokens=add_special_tokens).ids
        if add_special_tokens and self._add_bos and self.bos_token is not None:
            bos = self._tokenizer.token_to_id(self.bos_token)
            if bos is not None and (not ids or ids[0] != bos):
                ids.insert(0, bos)
        return ids

    def decode(self, token_ids: Sequence[int], *, skip_special_tokens: bool = True) -> str:
        text: str = self._tokenizer.decode(list(token_ids), skip_special_tokens=skip_special_tokens)
        return text

    def decode_stream(self, context_ids: Sequence[int], *, skip_special_tokens: bool = True) -> "TextStream":
        """An incremental decoder that continues after `context_ids` (e.g. the prompt's tail)."""
        return TextStream(self._tokenizer, context_ids, skip_special_tokens)

    def max_chars_for(self, num_tokens: int) -> int | None:
        """The most characters a text of `num_tokens` tokens can have, or None when this
        tokenizer's normalizer or pre-tokenizer may drop or merge characters (no bound)."""
        return None if self.may_shrink_text else num_tokens * self.max_chars_per_token

    @functools.cache  # noqa: B019 (one tokenizer per process, kept for its lifetime)
    def token_text(self, token_id: int) -> str:
        """One token's text on its own (special tokens included; a partial UTF-8 character
        shows as U+FFFD)."""
        text: str = self._tokenizer.decode([token_id], skip_special_tokens=False)
        return text

    @functools.cache  # noqa: B019
    def token_bytes(self, token_id: int) -> bytes:
        """The bytes one token stands for (a byte-level token may hold part of a character)."""
        token = self._tokenizer.id_to_token(token_id)
        if token is None:
            return b""
        if self._byte_level:
            try:
                return bytes(_BYTE_OF_CHAR[char] for char in token)
            except KeyError:  # an added token, stored as plain text
                return token.encode()
        if token.startswith("<0x") and token.endswith(">") and len(token) == 6:
            return bytes([int(token[3:5], 16)])
        return self.token_text(token_id).encode()

    def token_id(self, token: str) -> int | None:
        found: int | None = self._tokenizer.token_to_id(token)
        return found

    def apply_chat_template(self, messages: Sequence[dict[str, Any]], *, add_generation_prompt: bool = True) -> str:
        if not isinstance(self._chat_template, str):
            raise ChatTemplateError("this model has no chat template; use /v1/completions")
        environment = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        environment.globals["raise_exception"] = _raise_exception
        try:
            template = environment.from_string(self._chat_template)
            return template.render(
                messages=list(messages),
                add_generation_prompt=add_generation_prompt,
                bos_token=self.bos_token or "",
                eos_token=self.eos_token or "",
            )
        except jinja2.TemplateError as error:
            raise ChatTemplateError(f"chat template failed: {error}") from error


def _byte_alphabet() -> dict[str, int]:
    """GPT-2's byte-level alphabet: the character each byte is written as in a byte-level vocabulary."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars = list(printable)
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return {chr(char): byte for byte, char in zip(printable, chars, strict=True)}


_BYTE_OF_CHAR = _byte_alphabet()

# Normalizers and pre-tokenizers that never shorten the text (so a token covers at most as many
# characters as its vocabulary entry has).
_LENGTH_KEEPING = {"Prepend", "NFD", "NFKD", "Lowercase", "ByteLevel", "Metaspace", "Digits", "Punctuation",
                   "UnicodeScripts", "Split"}


def _may_shrink_text(pipeline: dict[str, Any]) -> bool:
    if pipeline.get("model", {}).get("type") == "WordPiece":
        return True  # a whole unknown word becomes one [UNK]
    return any(_step_may_shrink(pipeline.get(stage)) for stage in ("normalizer", "pre_tokenizer"))


def _step_may_shrink(step: Any) -> bool:
    if step is None:
        return False
    kind = step.get("type")
    if kind == "Sequence":
        parts = step.get("normalizers") or step.get("pretokenizers") or []
        return any(_step_may_shrink(part) for part in parts)
    if kind == "Replace":
        pattern = step.get("pattern", {})
        return "String" not in pattern or len(step.get("content", "")) < len(pattern["String"])
    if kind == "Split":
        return step.get("behavior") == "Removed"
    return kind not in _LENGTH_KEEPING


def _uses_byte_level(decoder: Any) -> bool:
    if decoder is None:
        return False
    if decoder.get("type") == "Sequence":
        return any(_uses_byte_level(part) for part in decoder.get("decoders", []))
    return decoder.get("type") == "ByteLevel"


class TextStream:
    """Decodes one token at a time (in Rust), returning text only once it is valid UTF-8."""

    def __init__(self, tokenizer: FastTokenizer, context_ids: Sequence[int], skip_special_tokens: bool = True):
        self._tokenizer = tokenizer
        self._stream = DecodeStream(ids=list(context_ids), skip_special_tokens=skip_special_tokens)

    def step(self, token_id: int) -> str:
        text: str | None = self._stream.step(self._tokenizer, token_id)
        return text or ""
