"""A model's tokenizer, read from its Hugging Face files (`tokenizer.json`, `tokenizer_config.json`)."""

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

    def decode_stream(self, context_ids: Sequence[int]) -> "TextStream":
        """An incremental decoder that continues after `context_ids` (e.g. the prompt's tail)."""
        return TextStream(self._tokenizer, context_ids)

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


class TextStream:
    """Decodes one token at a time (in Rust), returning text only once it is valid UTF-8."""

    def __init__(self, tokenizer: FastTokenizer, context_ids: Sequence[int]):
        self._tokenizer = tokenizer
        self._stream = DecodeStream(ids=list(context_ids), skip_special_tokens=True)

    def step(self, token_id: int) -> str:
        text: str | None = self._stream.step(self._tokenizer, token_id)
        return text or ""
