import pytest

from engine.wire.sampling_params import SamplingParams


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (SamplingParams(max_tokens=0), "max_tokens must be at least 1"),
        (SamplingParams(temperature=-0.5), "temperature must be in [0, 100]"),
        (SamplingParams(top_p=0.0), "top_p must be in (0, 1]"),
        (SamplingParams(top_k=-3), "top_k must be -1, 0 (disabled) or positive"),
        (SamplingParams(seed=-1), "seed must be in [0, 2**63)"),
        (SamplingParams(stop_token_ids=[100]), "stop token id 100 is outside the vocabulary (size 100)"),
        (SamplingParams(stop=[""]), "stop strings must not be empty"),
    ],
)
def test_invalid_values_are_named(params: SamplingParams, message: str) -> None:
    with pytest.raises(ValueError) as raised:
        params.validate(vocab_size=100)
    assert message in str(raised.value)


def test_valid_values_pass_and_zero_temperature_is_greedy() -> None:
    params = SamplingParams(temperature=0.0, top_k=-1, stop_token_ids=[99], stop=["\n"])
    params.validate(vocab_size=100)
    assert params.is_greedy


def test_temperatures_below_1e_5_are_greedy() -> None:
    """vLLM's rule: dividing logits by a tinier temperature overflows (NaN probabilities)."""
    assert SamplingParams(temperature=1e-30).is_greedy
    assert SamplingParams(temperature=9.9e-6).is_greedy
    assert not SamplingParams(temperature=1e-5).is_greedy
    assert not SamplingParams(temperature=0.7).is_greedy
