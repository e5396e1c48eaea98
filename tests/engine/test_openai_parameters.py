"""The request parameters vLLM's OpenAI server takes, through the real server with the official
`openai` package (or raw HTTP where the package cannot say it), each checked against an
independent reference: transformers on the same weights, a hand-computed formula, or the
server's own answer to an equivalent request."""

import json
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import torch
from tokenizers import Tokenizer
from transformers import MinNewTokensLengthLogitsProcessor

from support.engine_server import RunningServer, metric, wait_pool_full
from support.hf_reference import hf_greedy, hf_log_softmax, hf_model

PROMPT = [17, 250, 901, 33, 1200, 7, 64, 980, 402, 11, 8, 1500]
GREEDY: dict[str, Any] = {"temperature": 0, "ignore_eos": True}


def client(server: RunningServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)


def post(server: RunningServer, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = httpx.post(f"{server.url}{path}", json=body, timeout=120)
    assert response.status_code == 200, response.text
    reply: dict[str, Any] = response.json()
    return reply


def served_ids(server: RunningServer, prompt: list[int], max_tokens: int, **extra: Any) -> list[int]:
    """The token ids of a completion (through logprobs with `return_tokens_as_token_ids`)."""
    body = {"model": "tiny", "prompt": prompt, "max_tokens": max_tokens, "logprobs": 0,
            "return_tokens_as_token_ids": True, **GREEDY, **extra}
    tokens = post(server, "/v1/completions", body)["choices"][0]["logprobs"]["tokens"]
    return [int(token.removeprefix("token_id:")) for token in tokens]


def test_nulls_stand_for_defaults(server: RunningServer) -> None:
    nullable = ["temperature", "top_p", "n", "presence_penalty", "frequency_penalty", "stream", "echo", "logprobs",
                "stop", "best_of", "logit_bias", "user", "suffix", "max_completion_tokens", "min_p", "top_k",
                "repetition_penalty", "min_tokens", "stream_options"]
    base = {"model": "tiny", "prompt": PROMPT, "max_tokens": 6, "seed": 5, "ignore_eos": True}
    with_nulls = post(server, "/v1/completions", {**base, **{name: None for name in nullable}})
    plain = post(server, "/v1/completions", base)
    assert with_nulls["choices"][0]["text"] == plain["choices"][0]["text"]
    chat = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4, "seed": 5,
            "logprobs": None, "top_logprobs": None, "temperature": None, "n": None, "stream": None}
    assert post(server, "/v1/chat/completions", chat)["usage"]["completion_tokens"] >= 1


def test_unknown_fields_are_ignored_with_one_warning_naming_them(server: RunningServer) -> None:
    before = len(server.log)
    body = {"model": "tiny", "prompt": PROMPT, "max_tokens": 2, "guided_json": {}, "zeta_knob": 3}
    assert post(server, "/v1/completions", body)["usage"]["completion_tokens"] == 2
    warnings = [line for line in server.log[before:] if "ignoring fields" in line]
    assert len(warnings) == 1 and "guided_json, zeta_knob" in warnings[0] and "WARNING" in warnings[0]


def test_completion_logprobs_and_echo_equal_transformers_log_softmax(server: RunningServer, tiny_model_dir: Path) -> None:
    reply = client(server).completions.create(
        model="tiny", prompt=PROMPT, max_tokens=5, logprobs=3, echo=True, temperature=0,
        extra_body={"ignore_eos": True, "return_tokens_as_token_ids": True},
    )
    logprobs = reply.choices[0].logprobs
    assert logprobs is not None and logprobs.tokens and logprobs.token_logprobs and logprobs.top_logprobs
    ids = [int(token.removeprefix("token_id:")) for token in logprobs.tokens]
    assert ids[: len(PROMPT)] == PROMPT and len(ids) == len(PROMPT) + 5
    reference = hf_log_softmax(tiny_model_dir, ids)
    assert logprobs.token_logprobs[0] is None and logprobs.top_logprobs[0] is None
    for position in range(1, len(ids)):
        row = reference[position - 1]
        assert logprobs.token_logprobs[position] == pytest.approx(float(row[ids[position]]), abs=2e-4)
        top = logprobs.top_logprobs[position]
        values, top_ids = row.topk(3)
        expected = {f"token_id:{t}": v for t, v in zip(top_ids.tolist(), values.tolist(), strict=True)}
        assert set(expected) <= set(top) and len(top) - len(expected) <= 1  # plus the chosen token
        for name, value in expected.items():
            assert top[name] == pytest.approx(value, abs=2e-4)
    assert ids[len(PROMPT):] == hf_greedy(tiny_model_dir, PROMPT, 5)


def test_echo_returns_the_prompt_text_first(server: RunningServer) -> None:
    text = "The quick brown fox"
    reply = client(server).completions.create(model="tiny", prompt=text, max_tokens=3, echo=True, temperature=0)
    plain = client(server).completions.create(model="tiny", prompt=text, max_tokens=3, temperature=0)
    assert reply.choices[0].text == text + plain.choices[0].text


def test_chat_logprobs_equal_transformers(server: RunningServer, tiny_model_dir: Path) -> None:
    messages = [{"role": "user", "content": "Hello there"}]
    prompt = post(server, "/tokenize", {"model": "tiny", "messages": messages})["tokens"]
    reply = client(server).chat.completions.create(
        model="tiny", messages=messages, max_tokens=4, temperature=0, logprobs=True, top_logprobs=2,  # type: ignore[arg-type]
        extra_body={"ignore_eos": True},
    )
    outputs = hf_greedy(tiny_model_dir, prompt, 4)
    reference = hf_log_softmax(tiny_model_dir, prompt + outputs)
    content = reply.choices[0].logprobs.content  # type: ignore[union-attr]
    assert content is not None and len(content) == 4
    tokenizer = Tokenizer.from_file(str(tiny_model_dir / "tokenizer.json"))
    for k, (token_id, entry) in enumerate(zip(outputs, content, strict=True)):
        row = reference[len(prompt) - 1 + k]
        assert entry.logprob == pytest.approx(float(row[token_id]), abs=2e-4)
        assert bytes(entry.bytes or []) == b"".join(
            bytes([b]) for b in tokenizer.decode([token_id], skip_special_tokens=False).encode()
        ) or entry.token == "\ufffd"
        values, top_ids = row.topk(2)
        assert [t.logprob for t in entry.top_logprobs] == pytest.approx(values.tolist(), abs=2e-4)
        assert [t.token for t in entry.top_logprobs] == [
            tokenizer.decode([t], skip_special_tokens=False) for t in top_ids.tolist()
        ]


def test_n_samples_are_seeded_one_by_one_and_best_of_keeps_the_likeliest(server: RunningServer) -> None:
    sampled = {"temperature": 1.0, "seed": 11, "ignore_eos": True, "logprobs": 0}
    every = post(server, "/v1/completions", {"model": "tiny", "prompt": PROMPT, "max_tokens": 6, "n": 4, **sampled})
    assert [c["index"] for c in every["choices"]] == [0, 1, 2, 3]
    assert every["usage"]["completion_tokens"] == 24
    assert len({c["text"] for c in every["choices"]}) > 1
    scores = [sum(c["logprobs"]["token_logprobs"]) for c in every["choices"]]
    best = post(server, "/v1/completions",
                {"model": "tiny", "prompt": PROMPT, "max_tokens": 6, "n": 2, "best_of": 4, **sampled})
    ranked = sorted(range(4), key=lambda i: scores[i], reverse=True)[:2]
    assert [c["text"] for c in best["choices"]] == [every["choices"][i]["text"] for i in ranked]
    assert best["usage"]["completion_tokens"] == 24  # every sample was generated
    # Sample i of a seeded call is the call with seed + i.
    third = post(server, "/v1/completions", {"model": "tiny", "prompt": PROMPT, "max_tokens": 6, **sampled,
                                             "seed": 13})
    assert third["choices"][0]["text"] == every["choices"][2]["text"]


def test_a_list_of_prompts_with_n_gives_every_choice_in_order(server: RunningServer) -> None:
    prompts = ["first prompt", "a second, longer prompt"]
    reply = client(server).completions.create(model="tiny", prompt=prompts, max_tokens=4, n=2, temperature=0,
                                              extra_body={"ignore_eos": True})
    assert [c.index for c in reply.choices] == [0, 1, 2, 3]
    for index, prompt in enumerate(prompts):
        alone = client(server).completions.create(model="tiny", prompt=prompt, max_tokens=4, temperature=0,
                                                  extra_body={"ignore_eos": True})
        assert reply.choices[2 * index].text == reply.choices[2 * index + 1].text == alone.choices[0].text
        assert alone.usage is not None and reply.usage is not None
    assert reply.usage is not None and reply.usage.completion_tokens == 16
    tokenized = [post(server, "/tokenize", {"prompt": p})["count"] for p in prompts]
    assert reply.usage.prompt_tokens == sum(tokenized)


def test_streaming_n_tells_choices_apart(server: RunningServer) -> None:
    stream = client(server).completions.create(model="tiny", prompt=PROMPT, max_tokens=5, n=3, temperature=0,
                                               stream=True, extra_body={"ignore_eos": True})
    texts = {0: "", 1: "", 2: ""}
    finished = []
    for chunk in stream:
        for choice in chunk.choices:
            texts[choice.index] += choice.text
            if choice.finish_reason:
                finished.append(choice.index)
    assert sorted(finished) == [0, 1, 2] and len(set(texts.values())) == 1
    wait_pool_full(server)


def test_repetition_penalty_equals_transformers(server: RunningServer, tiny_model_dir: Path) -> None:
    expected = hf_greedy(tiny_model_dir, PROMPT, 24, repetition_penalty=1.8)
    assert served_ids(server, PROMPT, 24, repetition_penalty=1.8) == expected
    assert expected != hf_greedy(tiny_model_dir, PROMPT, 24)  # plain greedy repeats a token by then


def test_presence_and_frequency_penalties_follow_openais_formula(server: RunningServer, tiny_model_dir: Path) -> None:
    """Greedy decoding where each step's logits lose count * 0.7 + (count > 0) * 0.9 per output token."""
    model = hf_model(tiny_model_dir)
    tokens, outputs = list(PROMPT), []
    with torch.inference_mode():
        for _ in range(24):
            logits = model(torch.tensor([tokens])).logits[0, -1].float()
            counts = torch.bincount(torch.tensor(outputs, dtype=torch.long), minlength=logits.shape[0]).float()
            token = int((logits - 0.7 * counts - 0.9 * (counts > 0).float()).argmax())
            tokens.append(token)
            outputs.append(token)
    assert served_ids(server, PROMPT, 24, frequency_penalty=0.7, presence_penalty=0.9) == outputs
    assert outputs != hf_greedy(tiny_model_dir, PROMPT, 24)  # plain greedy repeats a token by then


def test_min_tokens_holds_back_stop_tokens_as_transformers_min_new_tokens(
    server: RunningServer, tiny_model_dir: Path
) -> None:
    plain = hf_greedy(tiny_model_dir, PROMPT, 8)
    stop = plain[1]  # greedy would stop at its second token
    early = post(server, "/v1/completions", {"model": "tiny", "prompt": PROMPT, "max_tokens": 8, "temperature": 0,
                                            "stop_token_ids": [stop], "ignore_eos": True})
    assert early["choices"][0]["finish_reason"] == "stop" and early["usage"]["completion_tokens"] == 2
    processor = MinNewTokensLengthLogitsProcessor(len(PROMPT), 6, [stop])
    expected = hf_greedy(tiny_model_dir, PROMPT, 8, logits_processor=[processor])
    got = served_ids(server, PROMPT, 8, min_tokens=6, stop_token_ids=[stop])
    assert got == expected[: len(got)] and len(got) >= 6 and stop not in got[:6]


def test_logit_bias_and_min_p(server: RunningServer, tiny_model_dir: Path) -> None:
    plain = hf_greedy(tiny_model_dir, PROMPT, 4)
    forced = served_ids(server, PROMPT, 4, logit_bias={"1234": 100})
    assert forced == [1234] * 4
    banned = served_ids(server, PROMPT, 1, logit_bias={str(plain[0]): -100})
    second_best = int(hf_log_softmax(tiny_model_dir, PROMPT)[-1].topk(2).indices[1])
    assert banned == [second_best]
    # min_p = 1 keeps only the most likely token: sampling equals greedy.
    assert served_ids(server, PROMPT, 4, temperature=1.0, min_p=1.0, seed=3) == plain


def test_max_completion_tokens_on_both_endpoints(server: RunningServer) -> None:
    completion = post(server, "/v1/completions", {"model": "tiny", "prompt": "hi", "max_completion_tokens": 7,
                                                  "ignore_eos": True})
    chat = post(server, "/v1/chat/completions", {"model": "tiny", "messages": [{"role": "user", "content": "hi"}],
                                                 "max_completion_tokens": 5, "ignore_eos": True})
    assert completion["usage"]["completion_tokens"] == 7 and chat["usage"]["completion_tokens"] == 5


def test_special_tokens_are_skipped_in_text_unless_asked(server: RunningServer, tiny_model_dir: Path) -> None:
    reserved = Tokenizer.from_file(str(tiny_model_dir / "tokenizer.json")).token_to_id("<|reserved_3|>")
    assert reserved is not None
    body = {"model": "tiny", "prompt": PROMPT, "max_tokens": 3, "logit_bias": {str(reserved): 100}, **GREEDY}
    assert post(server, "/v1/completions", body)["choices"][0]["text"] == ""
    shown = post(server, "/v1/completions", {**body, "skip_special_tokens": False})
    assert shown["choices"][0]["text"] == "<|reserved_3|>" * 3


def test_tokenize_detokenize_and_version(server: RunningServer, tiny_model_dir: Path) -> None:
    tokenizer = Tokenizer.from_file(str(tiny_model_dir / "tokenizer.json"))
    text = "héllo wörld, the quick fox"
    tokenized = post(server, "/tokenize", {"model": "tiny", "prompt": text})
    assert tokenized["tokens"] == tokenizer.encode(text).ids and tokenized["count"] == len(tokenized["tokens"])
    assert tokenized["max_model_len"] == 2048
    bare = post(server, "/tokenize", {"prompt": text, "add_special_tokens": False, "return_token_strs": True})
    assert bare["tokens"] == tokenizer.encode(text, add_special_tokens=False).ids
    assert len(bare["token_strs"]) == bare["count"]
    assert post(server, "/detokenize", {"tokens": tokenized["tokens"]})["prompt"] == text
    response = httpx.post(f"{server.url}/detokenize", json={"tokens": [10**7]})
    assert response.status_code == 400 and "outside the vocabulary" in response.json()["error"]["message"]
    assert httpx.get(f"{server.url}/version").json() == {"version": metadata.version("servekit-engine")}


def test_logprobs_stream_with_their_tokens(server: RunningServer, tiny_model_dir: Path) -> None:
    body = {"model": "tiny", "prompt": PROMPT, "max_tokens": 6, "logprobs": 1, "stream": True,
            "return_tokens_as_token_ids": True, **GREEDY}
    with httpx.stream("POST", f"{server.url}/v1/completions", json=body, timeout=60) as response:
        events = [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: {")]
    tokens, values = [], []
    for event in events:
        logprobs = event["choices"][0]["logprobs"]
        if logprobs:
            tokens += [int(t.removeprefix("token_id:")) for t in logprobs["tokens"]]
            values += logprobs["token_logprobs"]
    assert tokens == hf_greedy(tiny_model_dir, PROMPT, 6)
    reference = hf_log_softmax(tiny_model_dir, PROMPT + tokens)
    for k, (token, value) in enumerate(zip(tokens, values, strict=True)):
        assert value == pytest.approx(float(reference[len(PROMPT) - 1 + k, token]), abs=2e-4)
