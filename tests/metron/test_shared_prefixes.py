"""Shared system prompts, multi-turn sessions and the user's prompt files, sent to a real
(scripted) HTTP server: exact prompt texts, their order, and the cached prompt tokens reported."""

import json
from pathlib import Path

import pytest
from tokenizers import Tokenizer

from metron.arrivals import ArrivalConfig
from metron.cli import main
from metron.lengths import LengthConfig
from metron.load_generator import LoadConfig, LoadGenerator
from metron.prompts import PromptBuilder, load_tokenizer
from metron.runner import RunConfig, build_prompts, run_benchmark
from metron.sessions import SessionConfig, Turn, first_turn
from metron.targets.openai import OpenAIConfig, OpenAITarget
from metron.workload import WorkloadConfig, generate_workload


def text_of(sent: Turn | str) -> str:
    """A planned request's prompt text (a later turn: its new user message)."""
    return sent.prompt if isinstance(sent, Turn) else sent


def workload(num_requests: int, **options: object) -> WorkloadConfig:
    return WorkloadConfig(
        num_requests=num_requests,
        seed=3,
        arrivals=ArrivalConfig(kind="constant", rate=20.0),
        lengths=LengthConfig(kind="uniform", prompt_tokens=24, min_prompt_tokens=8, output_tokens=3, min_output_tokens=3),
        **options,  # type: ignore[arg-type]
    )


def test_every_prompt_starts_with_the_same_prefix_of_n_tokens(scripted_server, tokenizer_path: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server = scripted_server({"first_s": 0.02, "gap_s": 0.01, "usage": "final", "cached_tokens": 20})
    config = RunConfig(workload=workload(5, shared_prefix_tokens=20), tokenizer_path=str(tokenizer_path))
    outcome = run_benchmark(config, OpenAITarget(OpenAIConfig(url=server.url, model="scripted")), tmp_path / "run")

    tokenizer: Tokenizer = load_tokenizer(tokenizer_path)
    prefix = PromptBuilder(tokenizer, seed=3).shared_prefix(20)
    prefix_ids = tokenizer.encode(prefix.text).ids
    assert len(prefix_ids) == 20 and prefix.exact
    planned, exact = build_prompts(config)
    assert exact
    sent = server.log()
    bodies = set()
    for spec, turn in planned:
        prompt = turn.prompt
        assert sent[f"metron-{spec.id}"]["prompt"] == prompt
        assert prompt.startswith(prefix.text + "\n")
        ids = tokenizer.encode(prompt).ids
        assert len(ids) == spec.prompt_tokens and ids[:20] == prefix_ids
        bodies.add(prompt[len(prefix.text) :])
    assert len(bodies) == 5  # only the prefix is shared
    assert [r.cached_prompt_tokens for r in outcome.records] == [20] * 5
    assert outcome.metrics["cached_prompt_tokens_total"] == 100
    assert outcome.metrics["cached_prompt_fraction"] == pytest.approx(100 / sum(r.prompt_tokens for r in outcome.records))


def test_a_server_that_reports_no_cache_leaves_the_figures_none(scripted_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server = scripted_server({"first_s": 0.02, "gap_s": 0.01, "usage": "final"})
    outcome = run_benchmark(
        RunConfig(workload=workload(2, shared_prefix_tokens=5)),
        OpenAITarget(OpenAIConfig(url=server.url, model="scripted")),
        tmp_path / "run",
    )
    assert [r.cached_prompt_tokens for r in outcome.records] == [None, None]
    assert (outcome.metrics["cached_prompt_tokens_total"], outcome.metrics["cached_prompt_fraction"]) == (None, None)


def test_each_turn_continues_the_previous_prompt_and_answer_after_the_think_time(  # type: ignore[no-untyped-def]
    scripted_server, tmp_path: Path
) -> None:
    server = scripted_server({"first_s": 0.05, "gap_s": 0.01, "usage": "final"})
    think = 0.2
    config = RunConfig(workload=workload(6, shared_prefix_tokens=4, sessions=SessionConfig(num_turns=3, think_time_s=think)))
    target = OpenAITarget(OpenAIConfig(url=server.url, model="scripted"))
    outcome = run_benchmark(config, target, tmp_path / "run")
    assert [r.outcome for r in outcome.records] == ["finished"] * 6

    planned = {spec.id: (spec, text) for spec, text in build_prompts(config)[0]}
    sent = {int(key.removeprefix("metron-")): entry["prompt"] for key, entry in server.log().items()}
    for session in (0, 1):
        first, second, third = (3 * session + turn for turn in range(3))
        assert sent[first] == planned[first][1].prompt
        assert sent[second] == sent[first] + " tok tok tok" + "\n" + planned[second][1]
        assert sent[third] == sent[second] + " tok tok tok" + "\n" + planned[third][1]
        assert planned[second][0].follows_id == first and planned[third][0].follows_id == second
        records = outcome.records[first : third + 1]
        for before, after in zip(records, records[1:]):
            gap = after.arrival_s - before.token_times_s[-1]
            assert think - 0.005 <= gap <= think + 0.1
            assert after.scheduled_arrival_s == pytest.approx(after.arrival_s, abs=0.01)
            assert after.prompt_tokens > before.prompt_tokens + before.output_tokens  # the server's count


def test_a_chat_endpoint_gets_each_turn_as_alternating_messages_with_the_servers_answers(  # type: ignore[no-untyped-def]
    scripted_server, tmp_path: Path
) -> None:
    answers = {request_id: f" answer{request_id}" for request_id in range(6)}
    by_request = {f"metron-{request_id}": {"token_text": text} for request_id, text in answers.items()}
    server = scripted_server({"first_s": 0.02, "gap_s": 0.01, "usage": "final", "by_request": by_request})
    config = RunConfig(workload=workload(6, shared_prefix_tokens=4, sessions=SessionConfig(num_turns=3, think_time_s=0.05)))
    target = OpenAITarget(OpenAIConfig(url=server.url, model="scripted", endpoint="chat"))
    outcome = run_benchmark(config, target, tmp_path / "run")
    assert [r.outcome for r in outcome.records] == ["finished"] * 6

    planned = {spec.id: text_of(sent) for spec, sent in build_prompts(config)[0]}
    log = {int(key.removeprefix("metron-")): entry for key, entry in server.log().items()}
    for session in (0, 1):
        first, second, third = (3 * session + turn for turn in range(3))
        answer = {request_id: answers[request_id] * 3 for request_id in (first, second)}  # 3 tokens each
        assert log[first]["messages"] == [{"role": "user", "content": planned[first]}]
        assert log[second]["messages"] == [
            {"role": "user", "content": planned[first]},
            {"role": "assistant", "content": answer[first]},
            {"role": "user", "content": planned[second]},
        ]
        assert log[third]["messages"] == [
            {"role": "user", "content": planned[first]},
            {"role": "assistant", "content": answer[first]},
            {"role": "user", "content": planned[second]},
            {"role": "assistant", "content": answer[second]},
            {"role": "user", "content": planned[third]},
        ]
        assert log[first]["received"] < log[second]["received"] < log[third]["received"]


def write_lines(path: Path, lines: list[object]) -> Path:
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


PROMPTS = [
    {"prompt": "one plain prompt"},
    {"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello there"},
                  {"role": "assistant", "content": "recorded answer"}, {"role": "user", "content": "and then"}]},
    {"conversations": [{"from": "human", "value": "first question"}, {"from": "gpt", "value": "dropped"},
                       {"from": "human", "value": "second question"}]},
]


def test_a_prompts_file_in_each_layout_gives_the_prompts_in_order(tmp_path: Path) -> None:
    path = str(write_lines(tmp_path / "prompts.jsonl", PROMPTS))
    planned, exact = build_prompts(RunConfig(workload=workload(4), prompts_path=path))
    texts = {spec.id: turn.prompt for spec, turn in planned}
    assert texts == {0: "one plain prompt", 1: "be brief\nhello there", 2: "first question", 3: "one plain prompt"}
    assert [spec.prompt_tokens for spec, _ in sorted(planned, key=lambda pair: pair[0].id)] == [3, 4, 2, 3]
    assert not exact  # counted in words without a tokenizer

    sessions = RunConfig(workload=workload(6, sessions=SessionConfig(num_turns=2)), prompts_path=path)
    texts = {spec.id: text_of(sent) for spec, sent in build_prompts(sessions)[0]}
    assert texts == {0: "one plain prompt", 1: "one plain prompt", 2: "be brief\nhello there", 3: "and then",
                     4: "first question", 5: "second question"}


@pytest.mark.parametrize("prefix_tokens", [0, 4])
def test_a_prompts_files_system_text_reaches_a_chat_endpoint_as_the_first_message_of_every_turn(  # type: ignore[no-untyped-def]
    scripted_server, tmp_path: Path, prefix_tokens: int
) -> None:
    server = scripted_server({"first_s": 0.01, "gap_s": 0.01, "usage": "final", "token_text": " ok"})
    path = write_lines(tmp_path / "prompts.jsonl", [PROMPTS[1], PROMPTS[2]])
    run = ["run", "--url", server.url, "--model", "scripted", "--prompts-file", str(path), "--sessions", "2"]
    run += ["--turns", "2", "--output-tokens", "2", "--arrivals", "static", "--shared-prefix-tokens", str(prefix_tokens)]
    assert main([*run, "--endpoint", "chat", "--no-progress", "--output-dir", str(tmp_path / "chat")]) == 0
    log = {int(key.removeprefix("metron-")): entry["messages"] for key, entry in server.log().items()}
    prefix = PromptBuilder(None, seed=0).shared_prefix(prefix_tokens).text + "\n" if prefix_tokens else ""
    assert log == {
        0: [{"role": "system", "content": prefix + "be brief"}, {"role": "user", "content": "hello there"}],
        1: [{"role": "system", "content": prefix + "be brief"}, {"role": "user", "content": "hello there"},
            {"role": "assistant", "content": " ok ok"}, {"role": "user", "content": "and then"}],
        2: [{"role": "user", "content": prefix + "first question"}],
        3: [{"role": "user", "content": prefix + "first question"}, {"role": "assistant", "content": " ok ok"},
            {"role": "user", "content": "second question"}],
    }  # fmt: skip

    completions = scripted_server({"first_s": 0.01, "gap_s": 0.01, "usage": "final", "token_text": " ok"})
    run[run.index(server.url)] = completions.url
    assert main([*run, "--no-progress", "--output-dir", str(tmp_path / "completions")]) == 0
    prompts = {int(key.removeprefix("metron-")): entry["prompt"] for key, entry in completions.log().items()}
    assert prompts == {
        0: prefix + "be brief\nhello there",
        1: prefix + "be brief\nhello there ok ok\nand then",
        2: prefix + "first question",
        3: prefix + "first question ok ok\nsecond question",
    }


def test_a_malformed_prompts_file_line_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = ["run", "--url", "http://127.0.0.1:9", "--model", "m", "--output-dir", str(tmp_path / "out")]
    for number, bad in ((2, "{not json"), (3, {"messages": [{"role": "assistant", "content": "x"}]}), (2, [1, 2])):
        lines = [PROMPTS[0], bad] if number == 2 else [PROMPTS[0], "", bad]
        path = write_lines(tmp_path / "bad.jsonl", lines)
        assert main([*run, "--prompts-file", str(path)]) == 2
        assert f"(--prompts-file) {path} line {number}:" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--shared-prefix-tokens", "-1"], "--shared-prefix-tokens"),
        (["--turns", "0"], "--turns"),
        (["--sessions", "2", "--turns", "0"], "--turns"),
        (["--sessions", "2", "--num-requests", "4"], "--sessions or --num-requests"),
        (["--turns", "2", "--think-time", "-1"], "--think-time"),
        (["--prompts-file", "missing.jsonl"], "(--prompts-file) missing.jsonl does not exist"),
    ],
)
def test_bad_prefix_and_session_flags_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    run = ["run", "--url", "http://127.0.0.1:9", "--model", "m", "--output-dir", str(tmp_path / "out")]
    assert main([*run, *flags]) == 2
    assert message in capsys.readouterr().err


async def test_a_later_turn_given_a_whole_turn_instead_of_its_new_message_is_refused() -> None:
    target = OpenAITarget(OpenAIConfig(url="http://127.0.0.1:9", model="m"))
    specs = generate_workload(workload(2, sessions=SessionConfig(num_turns=2)))
    with pytest.raises(ValueError, match="request 1 is a later turn: it sends its new user message, not a Turn"):
        await LoadGenerator(target, LoadConfig()).run([(spec, first_turn("hello")) for spec in specs])
