"""Shared fixtures: real tokenizers trained here (no downloads), the traces in ../shared, the
scripted server, and a reader of metron's HTML pages."""

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from html.parser import HTMLParser
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


class ScriptedServer:
    """tests/metron/scripted_server.py in its own process, on a free loopback port."""

    def __init__(self, script: dict, log_path: Path) -> None:
        self.log_path = log_path
        self.process = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("scripted_server.py")), json.dumps(script), str(log_path)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        port = self.process.stdout.readline().strip()
        if not port.isdigit():
            self.process.kill()
            raise RuntimeError("the scripted server did not start")
        self.url = f"http://127.0.0.1:{port}"

    def log(self) -> dict[str, dict]:
        lines = self.log_path.read_text().splitlines() if self.log_path.exists() else []
        return {entry["id"]: entry for entry in map(json.loads, lines)}

    def close(self) -> None:
        self.process.kill()
        self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


@pytest.fixture
def scripted_server(tmp_path: Path) -> Iterator[Callable[[dict], ScriptedServer]]:
    servers: list[ScriptedServer] = []

    def start(script: dict) -> ScriptedServer:
        servers.append(ScriptedServer(script, tmp_path / f"server{len(servers)}.log"))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


class _Page(HTMLParser):
    """What a browser shows of a page's tables (each cell's text), and every URL it would load
    or link to (src and href)."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.urls: list[str] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [value or "" for name, value in attrs if name in ("src", "href")]
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append("".join(self._cell))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def _read_page(path: Path) -> tuple[list[list[str]], list[str]]:
    """(the rows of its tables, header rows included, as cell texts; the URLs of src and href)."""
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    page.close()
    return page.rows, page.urls


@pytest.fixture
def read_html_page() -> Callable[[Path], tuple[list[list[str]], list[str]]]:
    return _read_page
