"""Shared fixtures: real tokenizers trained here (no downloads) and the traces in ../shared."""

from pathlib import Path

import pytest
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from metron.prompts import load_corpus

TRACES = Path(__file__).resolve().parents[3] / "shared" / "data" / "traces"


def _train(kind: str, path: Path) -> Path:
    text = load_corpus().splitlines() * 4
    if kind == "byte_level":
        tokenizer = Tokenizer(models.BPE())
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=600, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    else:
        tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
        tokenizer.normalizer = normalizers.Replace(" ", "▁")
        tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
        tokenizer.decoder = decoders.Metaspace()
        trainer = trainers.BpeTrainer(vocab_size=500, special_tokens=["<unk>", "<s>"])
    tokenizer.train_from_iterator(text, trainer)
    tokenizer.save(str(path))
    return path


@pytest.fixture(scope="session", params=["byte_level", "metaspace"])
def tokenizer_path(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _train(request.param, tmp_path_factory.mktemp(request.param) / "tokenizer.json")


@pytest.fixture(scope="session")
def byte_level_tokenizer_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _train("byte_level", tmp_path_factory.mktemp("byte_level_only") / "tokenizer.json")


@pytest.fixture(scope="session")
def traces() -> Path:
    if not TRACES.is_dir():
        raise RuntimeError(f"the shared traces are missing: {TRACES}")
    return TRACES
