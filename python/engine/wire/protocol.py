"""The msgspec socket protocol between `engine.client` and the engine's RPC server.

Every message is one frame (see `engine.wire.framing`) holding a msgpack-encoded tagged struct
(server messages are arrays, their tag first, for compactness).
A connection starts with the client's `Hello`, answered by `Welcome` (or an `Error` and a close
when the protocol versions differ, the API key is wrong, or anything else comes first). Request ids are chosen by the client and unique within its
connection. New fields are added with defaults so older clients keep working.
"""

import msgspec

from engine.wire.sampling_params import SamplingParams
from engine.wire.step import TokenLogprobs

PROTOCOL_VERSION = 1


class Hello(msgspec.Struct, tag="hello", kw_only=True):
    protocol_version: int
    client_name: str = ""
    """The server's API key, when it was started with one."""
    api_key: str | None = None


class Generate(msgspec.Struct, tag="generate", kw_only=True):
    """Exactly one of `prompt` and `prompt_token_ids`."""

    request_id: int
    prompt: str | None = None
    prompt_token_ids: list[int] | None = None
    sampling: SamplingParams = SamplingParams()


class Abort(msgspec.Struct, tag="abort", kw_only=True):
    request_id: int


ClientMessage = Hello | Generate | Abort


class Welcome(msgspec.Struct, tag="welcome", kw_only=True, array_like=True):
    protocol_version: int
    model: str
    max_model_len: int
    vocab_size: int
    max_frame_bytes: int


class Tokens(msgspec.Struct, tag="tokens", array_like=True, gc=False):
    """New output tokens of a request; several when the client read slower than they came."""

    request_id: int
    token_ids: list[int]
    text: str
    """Server wall-clock time (time.time()) at which each token was produced."""
    server_times: list[float]
    """One per token when the request asked for `logprobs`."""
    logprobs: list[TokenLogprobs] | None = None
    """In a request's first `Tokens` when it asked for `prompt_logprobs`: one per prompt token
    (None for the first)."""
    prompt_logprobs: list[TokenLogprobs | None] | None = None


class Finished(msgspec.Struct, tag="finished", kw_only=True, array_like=True):
    request_id: int
    finish_reason: str
    """Text held back for stop-string checks and released at the end (often empty)."""
    text: str
    num_prompt_tokens: int
    num_output_tokens: int
    arrival_time: float
    first_scheduled_time: float | None
    num_preemptions: int
    """Prompt tokens the server's prefix cache held (0 without prefix caching)."""
    num_cached_tokens: int = 0


class Error(msgspec.Struct, tag="error", kw_only=True, array_like=True):
    """`request_id` is None for connection-level errors (after which the server closes)."""

    request_id: int | None
    code: str
    message: str


ServerMessage = Welcome | Tokens | Finished | Error

client_decoder = msgspec.msgpack.Decoder(ClientMessage)
server_decoder = msgspec.msgpack.Decoder(ServerMessage)
