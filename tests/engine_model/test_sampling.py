"""The sampler: greedy, temperature, top-k, top-p and per-request seeds."""

from pathlib import Path

import pytest
import torch

from engine.worker.model_runner import ModelRunner, ModelRunnerConfig
from engine.worker.logits_processors import TokenHistory
from engine.worker.sampling import Sampler, SamplingRow, filtered_probabilities
from engine.wire.sampling_params import SamplingParams

from harness import GREEDY, generate, random_prompts

CPU = torch.device("cpu")
NO_HISTORY = TokenHistory([1], 1)


def draw(
    sampler: Sampler,
    logits: torch.Tensor,
    params: list[SamplingParams],
    generators: list[torch.Generator | None] | None = None,
) -> torch.Tensor:
    """The sampler's tokens for rows of requests that have produced nothing yet."""
    generators = generators or [None] * len(params)
    return sampler.sample(logits, [SamplingRow(p, g, NO_HISTORY) for p, g in zip(params, generators)]).token_ids


def test_top_k_one_equals_greedy() -> None:
    logits = torch.randn(32, 100, generator=torch.Generator().manual_seed(0))
    params = [SamplingParams(temperature=1.5, top_k=1)] * 32
    tokens = draw(Sampler(CPU), logits, params)
    assert torch.equal(tokens, logits.argmax(dim=-1))


def test_greedy_rows_beside_random_rows() -> None:
    logits = torch.randn(6, 50, generator=torch.Generator().manual_seed(1))
    params = [GREEDY, SamplingParams(temperature=1.0), GREEDY, SamplingParams(temperature=0.5, top_p=0.5)] + [
        GREEDY
    ] * 2
    tokens = draw(Sampler(CPU), logits, params)
    greedy = logits.argmax(dim=-1)
    for row in (0, 2, 4, 5):
        assert tokens[row] == greedy[row]


def test_top_p_keeps_the_smallest_prefix_reaching_p() -> None:
    probabilities = torch.tensor([[0.05, 0.5, 0.1, 0.2, 0.15]])
    logits = probabilities.log()
    # Sorted: 0.5, 0.2, 0.15 (mass 0.85 >= 0.8), then 0.1 and 0.05 are dropped.
    kept = filtered_probabilities(logits, [SamplingParams(top_p=0.8)])
    torch.testing.assert_close(kept, torch.tensor([[0.0, 0.5, 0.0, 0.2, 0.15]]) / 0.85)
    # 0.5 alone reaches 0.5.
    kept = filtered_probabilities(logits, [SamplingParams(top_p=0.5)])
    torch.testing.assert_close(kept, torch.tensor([[0.0, 1.0, 0.0, 0.0, 0.0]]))
    # top-k and top-p together: top-2 first (0.5, 0.2), then top-p 0.9 of those keeps both.
    kept = filtered_probabilities(logits, [SamplingParams(top_k=2, top_p=0.9)])
    torch.testing.assert_close(kept, torch.tensor([[0.0, 0.5, 0.0, 0.2, 0.0]]) / 0.7)


def test_top_p_leaves_rows_without_top_p_whole() -> None:
    """A top_p = 1 row keeps every token beside a top_p < 1 row: where the float32 running sum of
    its sorted probabilities reaches 1.0 early, a top-p cut at 1.0 would drop its tail."""
    logits = torch.randn(2, 128256, generator=torch.Generator().manual_seed(0)) * 4
    kept = filtered_probabilities(logits, [SamplingParams(top_p=1.0), SamplingParams(top_p=0.9)])
    assert bool((kept[0] > 0).all())
    torch.testing.assert_close(kept[0], torch.softmax(logits[0], dim=-1), rtol=0.0, atol=0.0)
    assert int((kept[1] > 0).sum()) < 128256


def test_tiny_temperature_is_greedy() -> None:
    """Dividing by 1e-45 makes logits infinite and probabilities NaN; below 1e-5 is greedy."""
    logits = torch.randn(8, 100, generator=torch.Generator().manual_seed(4))
    params = [SamplingParams(temperature=t, top_p=p) for t in (1e-30, 1e-45) for p in (1.0, 0.5, 0.9, 1.0)]
    tokens = draw(Sampler(CPU), logits, params)
    assert torch.equal(tokens, logits.argmax(dim=-1))


def test_empirical_distribution_matches_softmax() -> None:
    logits = torch.tensor([1.0, 0.2, -0.5, 2.0, 0.0])
    num_draws = 40_000
    for params in (SamplingParams(temperature=0.7), SamplingParams(temperature=1.3, top_k=3)):
        expected = filtered_probabilities(logits[None, :], [params])[0]
        tokens = draw(Sampler(CPU, seed=3), logits.expand(num_draws, -1), [params] * num_draws)
        frequencies = torch.bincount(tokens, minlength=5).float() / num_draws
        # Four standard deviations of a frequency estimated from 40,000 draws is at most 0.01.
        torch.testing.assert_close(frequencies, expected, rtol=0.0, atol=0.01)
    expected_top_k = torch.softmax(torch.tensor([1.0, 0.2, 2.0]) / 1.3, dim=0)
    torch.testing.assert_close(
        filtered_probabilities(logits[None, :], [SamplingParams(temperature=1.3, top_k=3)])[0, [0, 1, 3]],
        expected_top_k,
    )


def test_seeded_rows_ignore_their_neighbours() -> None:
    logits = torch.randn(4, 64, generator=torch.Generator().manual_seed(2))
    seeded, other = SamplingParams(temperature=1.0, seed=7), SamplingParams(temperature=1.0)
    alone_sampler, crowd_sampler = Sampler(CPU, seed=1), Sampler(CPU, seed=99)
    alone_generator, crowd_generator = alone_sampler.new_generator(7), crowd_sampler.new_generator(7)
    neighbour_generator = crowd_sampler.new_generator(8)
    crowd_params = [other, seeded, other, SamplingParams(temperature=0.9, seed=8)]
    crowd_logits = logits[[1, 0, 2, 3]]
    for _ in range(20):
        alone = draw(alone_sampler, logits[:1], [seeded], [alone_generator])
        crowd = draw(crowd_sampler, crowd_logits, crowd_params, [None, crowd_generator, None, neighbour_generator])
        assert crowd[1] == alone[0]


def test_seeded_requests_reproducible_across_batches(tiny_llama: Path) -> None:
    """A seeded request samples the same tokens alone, in a crowd, and with a different chunk size."""
    prompts = random_prompts(7, [12, 30, 5, 18], 512)
    seeded = SamplingParams(temperature=1.0, top_p=0.95, seed=1234)
    unseeded = SamplingParams(temperature=1.0)

    def run(prompt_ids: list[int], params: list[SamplingParams], token_budget: int) -> dict[int, list[int]]:
        runner = ModelRunner(ModelRunnerConfig(model=str(tiny_llama), attention_backend="sdpa", seed=len(prompt_ids)))
        return generate(
            runner, [prompts[i] for i in prompt_ids], 20, sampling=params, token_budget=token_budget, num_blocks=256
        ).outputs

    alone = run([0], [seeded], 512)[0]
    crowd = run([1, 0, 2, 3], [unseeded, seeded, GREEDY, SamplingParams(temperature=0.8, seed=5)], 16)[1]
    assert crowd == alone
    unseeded_runs = run([0, 1], [unseeded, unseeded], 512), run([0, 1], [unseeded, unseeded], 512)
    assert unseeded_runs[0] == unseeded_runs[1]  # the runner's own seed makes unseeded sampling repeatable


def test_sampling_arguments_must_line_up() -> None:
    with pytest.raises(ValueError, match="3 rows of logits for 2 sampling rows"):
        draw(Sampler(CPU), torch.zeros(3, 10), [GREEDY, GREEDY])
