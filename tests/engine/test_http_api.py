"""The OpenAI-compatible API of a real server process, through the official `openai` package
and raw HTTP."""

import json

import httpx
import openai
import pytest
import trio

from support.engine_server import RunningServer, metric, wait_pool_full


def client(server: RunningServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)


VLLM_METRICS = [
    "vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:gpu_cache_usage_perc",
    "vllm:time_to_first_token_seconds_count", "vllm:inter_token_latency_seconds_count",
    "vllm:e2e_request_latency_seconds_count", "vllm:prompt_tokens_total", "vllm:generation_tokens_total",
    "vllm:request_success_total", "vllm:prefix_cache_queries_total", "vllm:num_preemptions_total",
]


def test_models_health_and_metrics(server: RunningServer) -> None:
    models = client(server).models.list()
    assert [m.id for m in models.data] == ["tiny"]
    assert httpx.get(f"{server.url}/health").json() == {"status": "ok"}
    assert metric(server, "engine_kv_blocks_total") == 512
    prompt_tokens, requests = metric(server, "vllm:prompt_tokens_total"), metric(server, "vllm:request_success_total")
    reply = client(server).completions.create(model="tiny", prompt=[1, 2, 3, 4], max_tokens=3,
                                              extra_body={"ignore_eos": True})
    assert reply.usage is not None
    for name in VLLM_METRICS:
        metric(server, name)
    assert metric(server, "vllm:prompt_tokens_total") - prompt_tokens == 4
    assert metric(server, "vllm:request_success_total", 'finished_reason="length"') >= 1
    assert metric(server, "vllm:request_success_total") - requests == 1
    assert any('"POST /v1/completions" 200' in line and "engine.access" in line for line in server.log)


def test_streaming_completion_with_the_openai_package(server: RunningServer) -> None:
    stream = client(server).completions.create(
        model="tiny",
        prompt="The quick brown fox",
        max_tokens=12,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"ignore_eos": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == ["length"]
    usage = chunks[-1].usage
    assert usage is not None and usage.completion_tokens == 12 and usage.prompt_tokens > 0
    whole = client(server).completions.create(
        model="tiny", prompt="The quick brown fox", max_tokens=12, temperature=0, extra_body={"ignore_eos": True}
    )
    assert whole.choices[0].text == text  # greedy: streaming and not streaming agree
    assert whole.usage is not None and whole.usage.total_tokens == usage.total_tokens


def test_chat_completion_streams_a_role_then_content(server: RunningServer) -> None:
    stream = client(server).chat.completions.create(
        model="tiny",
        messages=[{"role": "user", "content": "Hello there"}],
        max_tokens=6,
        temperature=0,
        stream=True,
        extra_body={"ignore_eos": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason == "length"
    reply = client(server).chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "Hello there"}], max_tokens=6, temperature=0,
        extra_body={"ignore_eos": True},
    )
    assert reply.choices[0].message.content == "".join(c.choices[0].delta.content or "" for c in chunks)
    assert reply.usage is not None and reply.usage.completion_tokens == 6


def test_continuous_usage_counts_tokens_per_event(server: RunningServer) -> None:
    body = {
        "model": "tiny", "prompt": [5, 6, 7], "max_tokens": 8, "stream": True, "ignore_eos": True,
        "stream_options": {"continuous_usage_stats": True, "include_usage": True},
    }
    with httpx.stream("POST", f"{server.url}/v1/completions", json=body) as response:
        events = [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: {")]
    counts = [e["usage"]["completion_tokens"] for e in events if e.get("choices")]
    assert counts == sorted(counts) and counts[-1] == 8
    assert events[-1]["usage"] == {"prompt_tokens": 3, "completion_tokens": 8, "total_tokens": 11}


def test_stop_string_ends_the_completion_before_it(server: RunningServer) -> None:
    first = client(server).completions.create(
        model="tiny", prompt="abc", max_tokens=16, temperature=0, extra_body={"ignore_eos": True}
    )
    text = first.choices[0].text
    stop = text[5:8] if len(text) >= 8 else text[-2:]
    assert stop
    cut = client(server).completions.create(
        model="tiny", prompt="abc", max_tokens=16, temperature=0, stop=[stop], extra_body={"ignore_eos": True}
    )
    assert cut.choices[0].finish_reason == "stop"
    assert cut.choices[0].text == text[: text.index(stop)]


BAD_BODIES = [
    (b"{not json", 400, "invalid request body"),
    (json.dumps({"model": "tiny", "prompt": "hi", "max_tokens": "ten"}).encode(), 400, "$.max_tokens"),
    (json.dumps({"model": "tiny", "prompt": "hi", "temperature": "hot"}).encode(), 400, "$.temperature"),
    (json.dumps({"model": "other", "prompt": "hi"}).encode(), 404, "The model `other` does not exist"),
    (json.dumps({"model": "tiny", "prompt": "hi", "temperature": -1}).encode(), 400, "temperature must be in"),
    (json.dumps({"model": "tiny", "prompt": "hi", "top_p": 0}).encode(), 400, "top_p must be in"),
    (json.dumps({"model": "tiny", "prompt": "hi", "max_tokens": 0}).encode(), 400, "max_tokens must be at least 1"),
    (json.dumps({"model": "tiny", "prompt": "hi", "n": 0}).encode(), 400, "n must be in [1, 128]"),
    (json.dumps({"model": "tiny", "prompt": "hi", "n": 2, "best_of": 1}).encode(), 400, "best_of must be at least n"),
    (json.dumps({"model": "tiny", "prompt": "hi", "presence_penalty": 3}).encode(), 400, "presence_penalty must be in"),
    (json.dumps({"model": "tiny", "prompt": "hi", "logit_bias": {"x": 1}}).encode(), 400, "logit_bias keys"),
    (json.dumps({"model": "tiny", "prompt": "hi", "logprobs": 21}).encode(), 400, "logprobs must be in [0, 20]"),
    (json.dumps({"model": "tiny", "prompt": "hi", "min_tokens": 5, "max_tokens": 2}).encode(), 400, "min_tokens"),
    (json.dumps({"model": "tiny", "prompt": [1, "a"]}).encode(), 400, "prompt must be a text"),
    (json.dumps({"model": "tiny", "prompt": [1, 10**9]}).encode(), 400, "outside the vocabulary"),
    (json.dumps({"model": "tiny", "prompt": ""}).encode(), 400, "the prompt is empty"),
    (json.dumps({"model": "tiny", "prompt": "x " * 5000}).encode(), 400, "maximum context length"),
]


@pytest.mark.parametrize(("body", "status", "message"), BAD_BODIES)
def test_bad_input_gets_an_openai_error_and_the_server_keeps_serving(
    server: RunningServer, body: bytes, status: int, message: str
) -> None:
    response = httpx.post(f"{server.url}/v1/completions", content=body, headers={"content-type": "application/json"})
    assert response.status_code == status
    error = response.json()["error"]
    assert message in error["message"] and error["type"]
    ok = client(server).completions.create(model="tiny", prompt="still alive", max_tokens=2)
    assert ok.usage is not None and ok.usage.completion_tokens >= 1
    wait_pool_full(server)


def test_unknown_route_and_oversized_body(server: RunningServer) -> None:
    assert httpx.get(f"{server.url}/v2/nothing").json()["error"]["message"].startswith("Not Found")
    huge = b"x" * (33 * 1024 * 1024)
    response = httpx.post(f"{server.url}/v1/completions", content=huge)
    assert response.status_code == 413


def test_a_client_disconnecting_mid_stream_frees_its_kv_blocks(server: RunningServer) -> None:
    total = metric(server, "engine_kv_blocks_total")
    body = {"model": "tiny", "prompt": "a long story", "max_tokens": 400, "stream": True, "ignore_eos": True}
    with httpx.stream("POST", f"{server.url}/v1/completions", json=body) as response:
        lines = response.iter_lines()
        received = [next(lines) for _ in range(6)]
        assert any(line.startswith("data: ") for line in received)
        assert metric(server, "engine_kv_blocks_free") < total
    # The connection is closed; the engine aborts the request and frees its blocks.
    assert wait_pool_full(server, timeout_s=5) < 5


async def test_two_hundred_concurrent_streams_all_complete(server: RunningServer) -> None:
    results: dict[int, int] = {}
    limits = httpx.Limits(max_connections=200)
    async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=300) as http:

        async def one(index: int) -> None:
            body = {"model": "tiny", "prompt": f"request {index}", "max_tokens": 10 + index % 7,
                    "stream": True, "ignore_eos": True, "stream_options": {"include_usage": True}}
            async with http.stream("POST", "/v1/completions", json=body) as response:
                events = [json.loads(line[6:]) async for line in response.aiter_lines() if line.startswith("data: {")]
            results[index] = events[-1]["usage"]["completion_tokens"]

        async with trio.open_nursery() as nursery:
            for index in range(200):
                nursery.start_soon(one, index)
    assert results == {index: 10 + index % 7 for index in range(200)}
