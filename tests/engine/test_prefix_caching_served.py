"""`--enable-prefix-caching` through the served engine: a repeated prompt computes only what the
cache lacks, reports it in `/metrics` and in `usage`, and returns the same text as a server
without the cache; `n` samples share the prompt's blocks; metron measures a shared prefix as
cached prompt tokens over both of its engine-facing targets."""

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from metron.cli import main as metron_main

from support.engine_server import RunningServer, metric, start_server, wait_pool_full

PROMPT = [(7 * i + 3) % 2000 for i in range(100)]  # 6 full blocks of 16, then 4 tokens
BODY = {"model": "tiny", "prompt": PROMPT, "max_tokens": 8, "temperature": 0, "ignore_eos": True}


@pytest.fixture(scope="module")
def caching(tiny_model_dir: Path) -> Iterator[RunningServer]:
    running = start_server(tiny_model_dir, "--num-kv-blocks", "256", "--enable-prefix-caching")
    yield running
    running.stop()


def complete(server: RunningServer, **extra: object) -> dict[str, object]:
    response = httpx.post(f"{server.url}/v1/completions", json={**BODY, **extra}, timeout=60)
    assert response.status_code == 200, response.text
    reply: dict[str, object] = response.json()
    return reply


def computed(server: RunningServer) -> float:
    return metric(server, "engine_prefill_tokens_computed_total")


def test_a_repeated_prompt_computes_only_its_uncached_tail(caching: RunningServer, server: RunningServer) -> None:
    queried, hits = metric(caching, "vllm:prefix_cache_queries_total"), metric(caching, "engine_prefix_cache_hits_total")
    before = computed(caching)
    first = complete(caching)
    assert computed(caching) - before == 100
    second = complete(caching)
    assert computed(caching) - before == 100 + 4  # the 6 cached blocks were not run again
    assert second["usage"]["prompt_tokens_details"] == {"cached_tokens": 96}  # type: ignore[index]
    assert first["usage"]["prompt_tokens_details"] == {"cached_tokens": 0}  # type: ignore[index]
    assert metric(caching, "engine_prefix_cache_queries_total") - queried == 200
    assert metric(caching, "vllm:prefix_cache_hits_total") - hits == 96
    without = [complete(server), complete(server)]
    texts = {reply["choices"][0]["text"] for reply in [first, second, *without]}  # type: ignore[index]
    assert len(texts) == 1
    assert "prompt_tokens_details" not in without[0]["usage"]  # type: ignore[operator]
    wait_pool_full(caching)


def test_n_samples_prefill_the_prompt_once(caching: RunningServer) -> None:
    other = [(5 * i + 1) % 2000 for i in range(100)]
    before, hits = computed(caching), metric(caching, "engine_prefix_cache_hits_total")
    reply = complete(caching, prompt=other, n=4, temperature=1.0, seed=3)
    assert len(reply["choices"]) == 4  # type: ignore[arg-type]
    assert computed(caching) - before == 100 + 3 * 4
    assert metric(caching, "engine_prefix_cache_hits_total") - hits == 3 * 96
    wait_pool_full(caching)


def test_prompt_logprobs_bypass_the_cache(caching: RunningServer) -> None:
    complete(caching)
    before = computed(caching)
    reply = complete(caching, echo=True, logprobs=1)
    assert computed(caching) - before == 100  # every prompt position is computed for its logprob
    logprobs = reply["choices"][0]["logprobs"]["token_logprobs"]  # type: ignore[index]
    assert logprobs[0] is None and all(value is not None for value in logprobs[1:])
    wait_pool_full(caching)


@pytest.mark.parametrize("target", ["engine", "openai"])
def test_metron_measures_a_shared_prefix_as_cached_prompt_tokens(
    caching: RunningServer, server: RunningServer, tiny_model_dir: Path, tmp_path: Path, target: str
) -> None:
    def run(on: RunningServer, name: str) -> list[dict[str, object]]:
        address = (
            ["--target", "engine", "--engine", f"{on.host}:{on.rpc_port}"]
            if target == "engine"
            else ["--url", on.url, "--model", "tiny"]
        )
        code = metron_main([
            "run", *address, "--tokenizer", str(tiny_model_dir / "tokenizer.json"), "--num-requests", "5",
            "--arrivals", "constant", "--rate", "4", "--prompt-tokens", "40", "--output-tokens", "4",
            "--shared-prefix-tokens", "64", "--no-progress", "--output-dir", str(tmp_path / name),
        ])
        assert code == 0
        lines = (tmp_path / name / "requests.jsonl").read_text().splitlines()
        return [json.loads(line) for line in lines]

    cached = run(caching, "cached")
    # Requests after the first start once it has filled the cache: the prefix's 4 full blocks hit.
    assert all(record["cached_prompt_tokens"] >= 64 for record in cached[1:]), cached
    summary = json.loads((tmp_path / "cached" / "summary.json").read_text())["metrics"]
    assert summary["cached_prompt_tokens_total"] == sum(record["cached_prompt_tokens"] for record in cached)
    uncached = run(server, "uncached")
    # Without the cache the RPC reports 0 cached tokens and the OpenAI reply no prompt_tokens_details.
    assert {record["cached_prompt_tokens"] for record in uncached} == ({0} if target == "engine" else {None})
    wait_pool_full(caching)
