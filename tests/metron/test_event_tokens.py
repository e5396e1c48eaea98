"""Token counts per streamed event come from what the server says, or the tokenizer, never a guess;
the SSE parser follows the event-stream format."""

from pathlib import Path

import pytest

from metron.prompts import load_tokenizer
from metron.targets.base import TargetError
from metron.targets.event_tokens import StreamEvent, tokens_per_event
from metron.targets.sse import EventStreamParser


def test_per_event_usage_then_logprobs_then_final_usage() -> None:
    usage = [StreamEvent(0.1, "a", completion_tokens=1), StreamEvent(0.2, "bc", completion_tokens=3)]
    assert tokens_per_event(usage, 3, None) == [1, 2]
    logprobs = [StreamEvent(0.1, "a", logprob_tokens=1), StreamEvent(0.2, "bcd", logprob_tokens=3)]
    assert tokens_per_event(logprobs, None, None) == [1, 3]
    one_each = [StreamEvent(0.1, "a"), StreamEvent(0.2, "b"), StreamEvent(0.3, "")]
    assert tokens_per_event(one_each, 2, None) == [1, 1, 0]


def test_without_counts_or_a_tokenizer_it_refuses_to_guess() -> None:
    with pytest.raises(TargetError, match="final usage says 5 tokens in 2 text events"):
        tokens_per_event([StreamEvent(0.1, "ab"), StreamEvent(0.2, "cde")], 5, None)
    with pytest.raises(TargetError, match="the server sent no usage"):
        tokens_per_event([StreamEvent(0.1, "ab")], None, None)


def test_the_tokenizer_places_tokens_in_the_event_where_they_ended(byte_level_tokenizer_path: Path) -> None:
    tokenizer = load_tokenizer(byte_level_tokenizer_path)
    text = "The river town woke slowly in the grey hour"
    ids = tokenizer.encode(text, add_special_tokens=False)
    cut = ids.offsets[3][1]  # where the fourth token ends
    events = [StreamEvent(0.1, text[:cut]), StreamEvent(0.2, text[cut:])]
    assert tokens_per_event(events, None, tokenizer) == [4, len(ids.ids) - 4]
    # The server's own total wins: two fewer tokens come off the last event.
    assert tokens_per_event(events, len(ids.ids) - 2, tokenizer) == [4, len(ids.ids) - 6]


def test_sse_parser() -> None:
    parser = EventStreamParser()
    assert parser.feed(": keep-alive", 0.0) is None
    assert parser.feed("event: delta", 1.0) is None
    assert parser.feed("data: first", 1.5) is None
    assert parser.feed("data:second", 2.0) is None
    event = parser.feed("", 2.5)
    assert event is not None and (event.data, event.event, event.received_s) == ("first\nsecond", "delta", 1.0)
    assert parser.feed("", 3.0) is None
    # An event is only dispatched by its blank line; one cut off by the stream's end is dropped.
    assert parser.feed("data: [DONE]", 4.0) is None
