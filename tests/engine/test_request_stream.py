from pathlib import Path

import pytest
import trio

from engine.frontend.detokenizer import IncrementalDetokenizer
from engine.errors import EngineFailedError
from engine.frontend.request_stream import RequestOutcome, RequestStream, TokenDelta
from engine.frontend.tokenizer import Tokenizer

OUTCOME = RequestOutcome("length", "", 3, 2, 0.0, 0.5, 0)


@pytest.fixture
def tokenizer(byte_level_tokenizer_dir: Path) -> Tokenizer:
    return Tokenizer(byte_level_tokenizer_dir)


def stream_for(tokenizer: Tokenizer, stop: tuple[str, ...] = (), on_stop: list[int] | None = None) -> RequestStream:
    stops = on_stop if on_stop is not None else []
    return RequestStream(IncrementalDetokenizer(tokenizer, [], stop), on_stop=lambda: stops.append(1))


async def test_tokens_pushed_between_reads_arrive_as_one_delta_with_their_text(tokenizer: Tokenizer) -> None:
    stream = stream_for(tokenizer)
    first, second, third = tokenizer.encode("The quick brown", add_special_tokens=False)[:3]
    stream.push(first, 1.0)
    stream.push(second, 2.0)
    delta = await stream.__anext__()
    assert delta == TokenDelta([first, second], tokenizer.decode([first, second]), [1.0, 2.0])
    stream.push(third, 3.0)
    stream.finish(OUTCOME)
    events = [event async for event in stream]
    assert events[0] == TokenDelta([third], tokenizer.decode([first, second, third])[len(delta.text) :], [3.0])
    assert events[1] == RequestOutcome("length", "", 3, 3, 0.0, 0.5, 0)  # the stream counts what it delivered


async def test_a_reader_waits_until_something_arrives(tokenizer: Tokenizer) -> None:
    stream = stream_for(tokenizer)
    received: list[object] = []

    async def read() -> None:
        received.extend([event async for event in stream])

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read)
        await trio.sleep(0.01)
        assert received == []
        stream.push(5, 0.0)
        stream.finish(OUTCOME)
    assert len(received) == 2 and isinstance(received[1], RequestOutcome)


async def test_failure_is_raised_after_pending_tokens(tokenizer: Tokenizer) -> None:
    stream = stream_for(tokenizer)
    stream.push(5, 0.0)
    stream.fail("worker died")
    assert isinstance(await stream.__anext__(), TokenDelta)
    with pytest.raises(EngineFailedError, match="worker died"):
        await stream.__anext__()
    with pytest.raises(StopAsyncIteration):
        await stream.__anext__()


async def test_a_stop_string_cuts_the_text_drops_later_tokens_and_stops_the_request_once(
    tokenizer: Tokenizer,
) -> None:
    stops: list[int] = []
    stream = stream_for(tokenizer, stop=("fox",), on_stop=stops)
    tokens = tokenizer.encode("The quick brown fox jumps over the lazy dog", add_special_tokens=False)
    for token in tokens:  # the engine produced more than the stop string before it learned of it
        stream.push(token, 0.0)
    delta = await stream.__anext__()
    assert isinstance(delta, TokenDelta) and delta.text == "The quick brown "
    assert tokenizer.decode(delta.token_ids).endswith("fox") and len(delta.token_ids) < len(tokens)
    assert stops == [1]
    stream.push(tokens[-1], 0.0)  # a token still in flight when the engine was told
    stream.finish(RequestOutcome("abort", "", 3, 99, 0.0, 0.5, 0))
    outcome = await stream.__anext__()
    assert isinstance(outcome, RequestOutcome)
    assert (outcome.finish_reason, outcome.num_output_tokens) == ("stop", len(delta.token_ids))
    assert stops == [1]
