"""Logit bias, min_tokens, penalties, min_p and logprobs against Hugging Face transformers' own
logits processors (and OpenAI's formula for the presence and frequency penalties, which
transformers does not have)."""

import pytest
import torch
from transformers import (
    MinNewTokensLengthLogitsProcessor,
    MinPLogitsWarper,
    RepetitionPenaltyLogitsProcessor,
    SequenceBiasLogitsProcessor,
)

from engine.worker.logits_processors import TokenHistory, process_logits
from engine.worker.sampling import Sampler, SamplingRow, filtered_probabilities, top_logprobs
from engine.wire.sampling_params import SamplingParams

VOCAB = 64
EOS = 2
PROMPT = [5, 9, 9, 33, 12]
OUTPUTS = [9, 40, 40, 40, 7]


def random_logits(seed: int, rows: int = 1) -> torch.Tensor:
    return torch.randn(rows, VOCAB, generator=torch.Generator().manual_seed(seed)) * 3


def processed(logits: torch.Tensor, params: SamplingParams, outputs: list[int] = OUTPUTS) -> torch.Tensor:
    history = TokenHistory(PROMPT + outputs, len(PROMPT))
    return process_logits(logits, [params], [history], [EOS])


@pytest.mark.parametrize("penalty", [0.5, 1.3, 2.0])
def test_repetition_penalty_equals_transformers(penalty: float) -> None:
    logits = random_logits(1)
    expected = RepetitionPenaltyLogitsProcessor(penalty)(torch.tensor([PROMPT + OUTPUTS]), logits.clone())
    torch.testing.assert_close(processed(logits, SamplingParams(repetition_penalty=penalty)), expected)


def test_logit_bias_equals_transformers_sequence_bias_of_single_tokens() -> None:
    logits = random_logits(2)
    bias = {3: 5.0, 17: -100.0, 40: 0.25}
    expected = SequenceBiasLogitsProcessor([[[token], value] for token, value in bias.items()])(
        torch.tensor([PROMPT + OUTPUTS]), logits.clone()
    )
    torch.testing.assert_close(processed(logits, SamplingParams(logit_bias=bias)), expected)


@pytest.mark.parametrize("num_outputs", [0, 3, 5])
def test_min_tokens_equals_transformers_min_new_tokens(num_outputs: int) -> None:
    logits = random_logits(3)
    outputs = OUTPUTS[:num_outputs]
    processor = MinNewTokensLengthLogitsProcessor(len(PROMPT), 5, [EOS, 11])
    expected = processor(torch.tensor([PROMPT + outputs]), logits.clone())
    params = SamplingParams(min_tokens=5, stop_token_ids=[11])
    torch.testing.assert_close(processed(logits, params, outputs), expected)
    ignoring = processed(logits, SamplingParams(min_tokens=5, stop_token_ids=[11], ignore_eos=True), outputs)
    assert ignoring[0, EOS] == logits[0, EOS]  # with ignore_eos only the stop tokens are masked


def test_presence_and_frequency_penalties_follow_openais_formula() -> None:
    """logits[j] - count[j] * frequency_penalty - (count[j] > 0) * presence_penalty, over output tokens."""
    logits = random_logits(4)
    expected = logits.clone()
    for token, count in {9: 1, 40: 3, 7: 1}.items():
        expected[0, token] -= count * 0.5 + 1.5
    got = processed(logits, SamplingParams(frequency_penalty=0.5, presence_penalty=1.5))
    torch.testing.assert_close(got, expected)
    assert got[0, 33] == logits[0, 33]  # prompt tokens are not penalised by these two


def test_rows_without_processing_are_left_alone() -> None:
    logits = random_logits(5, rows=2)
    histories = [TokenHistory(PROMPT + OUTPUTS, len(PROMPT))] * 2
    params = [SamplingParams(), SamplingParams(repetition_penalty=2.0)]
    got = process_logits(logits, params, histories, [EOS])
    assert torch.equal(got[0], logits[0]) and not torch.equal(got[1], logits[1])
    assert process_logits(logits, [SamplingParams()] * 2, histories, [EOS]) is logits


@pytest.mark.parametrize("min_p", [0.05, 0.3])
def test_min_p_equals_transformers(min_p: float) -> None:
    logits = random_logits(6, rows=3)
    temperature = 0.8
    expected = torch.softmax(MinPLogitsWarper(min_p)(torch.zeros(3, 1, dtype=torch.long), logits / temperature), -1)
    got = filtered_probabilities(logits, [SamplingParams(temperature=temperature, min_p=min_p)] * 3)
    torch.testing.assert_close(got, expected)


def test_greedy_takes_the_argmax_of_processed_logits() -> None:
    logits = random_logits(7)
    favourite = int(logits[0].argmin())
    sampler = Sampler(torch.device("cpu"), eos_token_ids=[EOS])
    rows = [SamplingRow(SamplingParams(temperature=0.0, logit_bias={favourite: 100.0}), None,
                        TokenHistory(PROMPT, len(PROMPT)))]
    assert int(sampler.sample(logits, rows).token_ids[0]) == favourite


def test_logprobs_are_of_the_raw_distribution_with_the_top_alternatives() -> None:
    logits = random_logits(8, rows=3)
    sampler = Sampler(torch.device("cpu"), eos_token_ids=[EOS])
    history = TokenHistory(PROMPT, len(PROMPT))
    params = [SamplingParams(temperature=0.0, logprobs=3, repetition_penalty=2.0), SamplingParams(temperature=0.0),
              SamplingParams(temperature=1.0, logprobs=0, seed=1)]
    result = sampler.sample(logits, [SamplingRow(p, None, history) for p in params])
    reference = torch.log_softmax(logits, dim=-1)
    assert result.logprobs[1] is None
    for row in (0, 2):
        entry = result.logprobs[row]
        assert entry is not None
        token = int(result.token_ids[row])
        assert entry.logprob == pytest.approx(float(reference[row, token]), abs=1e-6)
        values, ids = reference[row].topk(params[row].logprobs or 0)
        assert entry.top_token_ids == ids.tolist()
        assert entry.top_logprobs == pytest.approx(values.tolist(), abs=1e-6)


def test_top_logprobs_of_given_tokens() -> None:
    logits = random_logits(9, rows=2)
    found = top_logprobs(logits, [1], [2], torch.tensor([0, 5]))
    reference = torch.log_softmax(logits[1], dim=-1)
    assert found[0].logprob == pytest.approx(float(reference[5]), abs=1e-6)
    assert found[0].top_token_ids == reference.topk(2).indices.tolist()
