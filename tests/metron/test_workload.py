"""Arrival processes hit their configured rate and burstiness; lengths follow their distributions;
prompts hit their token counts exactly; the same seed gives the same workload."""

from pathlib import Path

import msgspec
import numpy as np
import pytest

from metron.arrivals import ArrivalConfig, arrival_times
from metron.lengths import LengthConfig, request_lengths
from metron.prompts import PromptBuilder, load_tokenizer
from metron.workload import WorkloadConfig, generate_workload


def rate_and_cv(times: np.ndarray) -> tuple[float, float]:
    gaps = np.diff(times)
    return 1.0 / gaps.mean(), gaps.std() / gaps.mean()


@pytest.mark.parametrize(
    ("config", "cv"),
    [
        (ArrivalConfig(kind="poisson", rate=25.0), 1.0),
        (ArrivalConfig(kind="gamma", rate=25.0, cv=3.0), 3.0),
        (ArrivalConfig(kind="gamma", rate=25.0, cv=0.5), 0.5),
    ],
)
def test_empirical_rate_and_cv_match_the_configuration(config: ArrivalConfig, cv: float) -> None:
    times = arrival_times(config, 40_001, np.random.default_rng(7))
    rate, measured_cv = rate_and_cv(times)
    assert times[0] == 0.0 and np.all(np.diff(times) >= 0)
    # 40,000 gaps: the standard error of the mean gap is cv/200, of the CV well under 5% here.
    assert rate == pytest.approx(25.0, rel=4 * cv / 200)
    assert measured_cv == pytest.approx(cv, rel=0.05)


def test_poisson_counts_per_second_have_poisson_dispersion() -> None:
    times = arrival_times(ArrivalConfig(kind="poisson", rate=40.0), 40_000, np.random.default_rng(3))
    counts = np.bincount(times.astype(int))[:-1]
    assert counts.mean() == pytest.approx(40.0, rel=0.03)
    assert counts.var() / counts.mean() == pytest.approx(1.0, abs=0.15)


def test_static_arrivals_all_come_at_once() -> None:
    assert arrival_times(ArrivalConfig(kind="static"), 5, np.random.default_rng(0)).tolist() == [0.0] * 5


def test_trace_replay_is_shifted_and_scaled(traces: Path) -> None:
    path = traces / "splitwise_conv.csv"
    first = [0.0, 0.0]
    with path.open() as file:
        next(file)
        first = [float(next(file).split(",")[0]) for _ in range(4)]
    recorded = np.array(first) - first[0]
    config = ArrivalConfig(kind="trace", trace_path=str(path), rate_scale=4.0)
    np.testing.assert_allclose(arrival_times(config, 4, np.random.default_rng(0)), recorded / 4.0)


@pytest.mark.parametrize("num_requests", [100, 2_000, 19_366])
def test_trace_replay_at_a_chosen_mean_rate(traces: Path, num_requests: int) -> None:
    # The trace's first rows arrive far slower than the whole file (1.7 vs 4 QPS over 100 rows
    # when scaled by the whole file): the rate must hold for the rows actually replayed.
    trace = ArrivalConfig(kind="trace", trace_path=str(traces / "splitwise_conv.csv"))
    times = arrival_times(trace.with_rate(20.0, num_requests), num_requests, np.random.default_rng(0))
    assert (len(times) - 1) / times[-1] == pytest.approx(20.0, rel=1e-9)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (dict(kind="uniformish"), "unknown arrival kind 'uniformish'"),
        (dict(kind="poisson", rate=0.0), "arrival rate must be a positive"),
        (dict(kind="gamma", rate=1.0, cv=0.0), "positive coefficient of variation"),
        (dict(kind="trace"), "trace arrivals need trace_path"),
    ],
)
def test_bad_arrival_configs_say_what_is_wrong(config: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ArrivalConfig(**config)  # type: ignore[arg-type]


def test_trace_shorter_than_the_workload_is_an_error(traces: Path) -> None:
    config = ArrivalConfig(kind="trace", trace_path=str(traces / "splitwise_code.csv"))
    with pytest.raises(ValueError, match="has 8819 arrivals, fewer than the 9000 requested"):
        arrival_times(config, 9000, np.random.default_rng(0))


def test_uniform_and_zipf_lengths_stay_in_bounds_with_the_right_shape() -> None:
    rng = np.random.default_rng(1)
    uniform = LengthConfig(kind="uniform", min_prompt_tokens=10, prompt_tokens=20, min_output_tokens=5, output_tokens=5)
    prompts, outputs = request_lengths(uniform, 20_000, rng)
    assert prompts.min() == 10 and prompts.max() == 20 and set(outputs.tolist()) == {5}
    assert np.bincount(prompts)[10:21] / 20_000 == pytest.approx(np.full(11, 1 / 11), abs=0.01)

    zipf = LengthConfig(kind="zipf", min_prompt_tokens=1, prompt_tokens=4, output_tokens=4, zipf_theta=1.0)
    prompts, _ = request_lengths(zipf, 50_000, rng)
    expected = np.array([1, 1 / 2, 1 / 3, 1 / 4]) / (1 + 1 / 2 + 1 / 3 + 1 / 4)
    assert np.bincount(prompts)[1:] / 50_000 == pytest.approx(expected, abs=0.01)


def test_trace_lengths_come_from_the_columns_in_order_or_shuffled(traces: Path) -> None:
    path = traces / "splitwise_conv.csv"
    in_order = LengthConfig(kind="trace", trace_path=str(path), shuffle=False)
    prompts, outputs = request_lengths(in_order, 3, np.random.default_rng(0))
    assert (prompts[0], outputs[0]) == (374, 44)  # the file's first row
    shuffled = LengthConfig(kind="trace", trace_path=str(path), max_total_tokens=1000)
    prompts, outputs = request_lengths(shuffled, 5000, np.random.default_rng(0))
    unclipped = msgspec.structs.replace(shuffled, max_total_tokens=None)
    _, unclipped_outputs = request_lengths(unclipped, 5000, np.random.default_rng(0))
    assert np.all(prompts + outputs <= 1000) and np.all(prompts >= 1)
    assert len(set(prompts.tolist())) > 200 and np.mean(prompts + outputs == 1000) > 0.1  # clipped, not dropped
    assert np.array_equal(outputs, np.minimum(unclipped_outputs, 999))  # every output kept that fits
    keep_prompt = msgspec.structs.replace(shuffled, clip="keep_prompt")
    prompts, outputs = request_lengths(keep_prompt, 5000, np.random.default_rng(0))
    assert np.all(prompts + outputs <= 1000) and np.all(outputs >= 1)
    assert np.mean(prompts == 999) > 0.1 and np.mean(outputs == 1) > 0.1


def test_over_long_requests_keep_their_output_or_their_prompt(tmp_path: Path) -> None:
    """A 4,096-token context. Rows: fits; 3000 + 2000 (over by 904); a prompt alone too long; an
    output alone too long; both too long; exactly 4,096."""
    trace = tmp_path / "lengths.csv"
    rows = [(100, 50), (3000, 2000), (5000, 100), (10, 5000), (6000, 7000), (4000, 96)]
    trace.write_text("num_prefill_tokens,num_decode_tokens\n" + "".join(f"{p},{o}\n" for p, o in rows))
    config = LengthConfig(kind="trace", trace_path=str(trace), shuffle=False, max_total_tokens=4096)
    assert config.clip == "keep_output"  # Vidur's rule is the default
    prompts, outputs = request_lengths(config, len(rows), np.random.default_rng(0))
    # The prompt gives way (down to one token); the output only when it alone fills the context.
    assert list(zip(prompts.tolist(), outputs.tolist(), strict=True)) == [
        (100, 50), (2096, 2000), (3996, 100), (1, 4095), (1, 4095), (4000, 96)
    ]
    keep_prompt = msgspec.structs.replace(config, clip="keep_prompt")
    prompts, outputs = request_lengths(keep_prompt, len(rows), np.random.default_rng(0))
    # The prompt keeps up to 4,095 tokens; the output gets what is left.
    assert list(zip(prompts.tolist(), outputs.tolist(), strict=True)) == [
        (100, 50), (3000, 1096), (4095, 1), (10, 4086), (4095, 1), (4000, 96)
    ]


def test_bad_length_configs_say_what_is_wrong(traces: Path) -> None:
    with pytest.raises(ValueError, match="unknown clip rule 'prompt'; choose one of keep_output, keep_prompt"):
        LengthConfig(clip="prompt")
    with pytest.raises(ValueError, match="min_prompt_tokens \\(30\\) exceeds prompt_tokens \\(20\\)"):
        LengthConfig(kind="uniform", min_prompt_tokens=30, prompt_tokens=20)
    with pytest.raises(ValueError, match="output_tokens must be at least 1"):
        LengthConfig(output_tokens=0)
    config = LengthConfig(kind="trace", trace_path=str(traces / "splitwise_conv.csv"), prompt_column="prompt")
    with pytest.raises(ValueError, match="no numeric column 'prompt'"):
        request_lengths(config, 1, np.random.default_rng(0))
    with pytest.raises(ValueError, match="does not exist"):
        request_lengths(LengthConfig(kind="trace", trace_path="/nonexistent.csv"), 1, np.random.default_rng(0))


def test_same_seed_same_workload_and_warmups_come_first() -> None:
    config = WorkloadConfig(
        num_requests=50,
        num_warmup_requests=3,
        seed=11,
        arrivals=ArrivalConfig(kind="gamma", rate=5.0, cv=2.0),
        lengths=LengthConfig(kind="uniform", prompt_tokens=100, output_tokens=50),
    )
    first, again = generate_workload(config), generate_workload(config)
    assert first == again and len(first) == 53
    assert [r.warmup for r in first[:4]] == [True, True, True, False]
    other_seed = generate_workload(WorkloadConfig(num_requests=50, num_warmup_requests=3, seed=12))
    assert [r.arrival_s for r in other_seed] != [r.arrival_s for r in first]
    # lengths and arrivals draw from separate streams: a new rate leaves lengths alone
    faster = generate_workload(config.with_rate(50.0))
    assert [r.prompt_tokens for r in faster] == [r.prompt_tokens for r in first]
    assert faster[-1].arrival_s < first[-1].arrival_s


@pytest.mark.parametrize("num_tokens", [1, 2, 7, 64, 333, 2048])
def test_prompts_hit_the_token_count_exactly(tokenizer_path: Path, num_tokens: int) -> None:
    tokenizer = load_tokenizer(tokenizer_path)
    builder = PromptBuilder(tokenizer, seed=5)
    for request_id in range(5):
        prompt = builder.build(request_id, num_tokens)
        assert prompt.exact
        assert len(tokenizer.encode(prompt.text, add_special_tokens=False).ids) == num_tokens


def test_prompts_differ_between_requests_and_repeat_for_a_seed(byte_level_tokenizer_path: Path) -> None:
    builder = PromptBuilder(load_tokenizer(byte_level_tokenizer_path), seed=1)
    texts = {builder.build(i, 32).text[:40] for i in range(20)}
    assert len(texts) == 20
    assert builder.build(3, 32) == PromptBuilder(load_tokenizer(byte_level_tokenizer_path), seed=1).build(3, 32)


def test_prompts_without_a_tokenizer_are_words_marked_inexact() -> None:
    prompt = PromptBuilder(None).build(0, 50)
    assert len(prompt.text.split()) == 50 and not prompt.exact


def test_a_missing_or_broken_tokenizer_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        load_tokenizer(tmp_path / "nope.json")
    (tmp_path / "tokenizer.json").write_text("{}")
    with pytest.raises(ValueError, match="is not a Hugging Face tokenizer.json"):
        load_tokenizer(tmp_path)
