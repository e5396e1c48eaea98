import pytest
import trio

from engine.request_stream import EngineFailedError, RequestOutcome, RequestStream, TokenDelta

OUTCOME = RequestOutcome("length", "!", 3, 2, 0.0, 0.5, 0)


async def test_tokens_pushed_between_reads_arrive_as_one_delta_then_the_outcome() -> None:
    stream = RequestStream()
    stream.push(5, "a", 1.0)
    stream.push(6, "b", 2.0)
    assert await stream.__anext__() == TokenDelta([5, 6], "ab", [1.0, 2.0])
    stream.push(7, "c", 3.0)
    stream.finish(OUTCOME)
    assert [event async for event in stream] == [TokenDelta([7], "c", [3.0]), OUTCOME]


async def test_a_reader_waits_until_something_arrives() -> None:
    stream = RequestStream()
    received: list[object] = []

    async def read() -> None:
        received.extend([event async for event in stream])

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read)
        await trio.sleep(0.01)
        assert received == []
        stream.push(1, "x", 0.0)
        stream.finish(OUTCOME)
    assert received == [TokenDelta([1], "x", [0.0]), OUTCOME]


async def test_failure_is_raised_after_pending_tokens() -> None:
    stream = RequestStream()
    stream.push(1, "x", 0.0)
    stream.fail("worker died")
    assert await stream.__anext__() == TokenDelta([1], "x", [0.0])
    with pytest.raises(EngineFailedError, match="worker died"):
        await stream.__anext__()
    with pytest.raises(StopAsyncIteration):
        await stream.__anext__()
