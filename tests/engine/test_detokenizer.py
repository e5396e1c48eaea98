"""Incremental detokenization against the tokenizer's own full decode."""

from pathlib import Path

import pytest

from engine.frontend.detokenizer import IncrementalDetokenizer
from engine.frontend.tokenizer import ChatTemplateError, Tokenizer

TEXTS = [
    "héllo wörld, ça va? naïve café",
    "世界你好，模型服务。",
    "emoji 🙂🚀 mixed with ∑∫√ symbols",
    "plain ascii text only",
]


@pytest.mark.parametrize("text", TEXTS)
def test_deltas_add_up_to_the_full_decode_and_are_valid_utf8(byte_level_tokenizer_dir: Path, text: str) -> None:
    tokenizer = Tokenizer(byte_level_tokenizer_dir)
    prompt = tokenizer.encode("Prompt:")
    output = tokenizer.encode(text, add_special_tokens=False)
    detokenizer = IncrementalDetokenizer(tokenizer, prompt)
    deltas = [detokenizer.add_token(token) for token in output]
    deltas.append(detokenizer.flush())
    assert "".join(deltas) == tokenizer.decode(output) == text
    assert all("\ufffd" not in delta for delta in deltas)


def test_a_multibyte_character_split_across_byte_tokens_waits_until_complete(byte_level_tokenizer_dir: Path) -> None:
    tokenizer = Tokenizer(byte_level_tokenizer_dir)
    # One token per UTF-8 byte of the emoji: the byte-level alphabet has them all.
    byte_tokens = [tokenizer.token_id(ch) for ch in "ðŁĻĤ"]  # byte-level symbols of b"\xf0\x9f\x99\x82"
    assert None not in byte_tokens
    detokenizer = IncrementalDetokenizer(tokenizer, [])
    deltas = [detokenizer.add_token(t) for t in byte_tokens if t is not None]
    assert deltas == ["", "", "", "🙂"]


def test_stop_string_spanning_tokens_is_cut_and_never_shown(byte_level_tokenizer_dir: Path) -> None:
    tokenizer = Tokenizer(byte_level_tokenizer_dir)
    output = tokenizer.encode("The quick brown fox jumps", add_special_tokens=False)
    detokenizer = IncrementalDetokenizer(tokenizer, [], stop=["own fo", "zzz"])
    shown = ""
    for token in output:
        shown += detokenizer.add_token(token)
        if detokenizer.stopped_by:
            break
    assert detokenizer.stopped_by == "own fo"
    assert shown == "The quick br"
    assert detokenizer.add_token(output[-1]) == "" and detokenizer.flush() == ""


def test_text_that_only_looks_like_a_stop_prefix_is_released_at_the_end(byte_level_tokenizer_dir: Path) -> None:
    tokenizer = Tokenizer(byte_level_tokenizer_dir)
    output = tokenizer.encode("lazy dog", add_special_tokens=False)
    detokenizer = IncrementalDetokenizer(tokenizer, [], stop=["dogs!"])
    shown = "".join(detokenizer.add_token(token) for token in output)
    assert shown == "lazy"[: len(shown)] and len(shown) <= len("lazy dog") - 4
    assert shown + detokenizer.flush() == "lazy dog"
    assert detokenizer.stopped_by is None


def test_tokenizer_adds_bos_and_renders_the_chat_template(byte_level_tokenizer_dir: Path) -> None:
    tokenizer = Tokenizer(byte_level_tokenizer_dir)
    assert tokenizer.encode("hi")[0] == tokenizer.token_id("<s>")
    rendered = tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}])
    assert rendered == "<|user|>Hi\n<|assistant|>"


def test_a_model_without_chat_template_says_so(tmp_path: Path, byte_level_tokenizer_dir: Path) -> None:
    (tmp_path / "tokenizer.json").write_bytes((byte_level_tokenizer_dir / "tokenizer.json").read_bytes())
    with pytest.raises(ChatTemplateError, match="no chat template"):
        Tokenizer(tmp_path).apply_chat_template([{"role": "user", "content": "Hi"}])
