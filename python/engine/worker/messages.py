"""Messages between the engine process and its worker processes, one msgpack frame each."""

import msgspec

from engine.step import StepInput, StepOutput


class InitCache(msgspec.Struct, tag="init_cache"):
    num_blocks: int


class Execute(msgspec.Struct, tag="execute", array_like=True, gc=False):
    step: StepInput


class Shutdown(msgspec.Struct, tag="shutdown"):
    pass


class Ready(msgspec.Struct, tag="ready"):
    """Sent once the model is loaded: what the model is and how many KV blocks fit on this rank."""

    rank: int
    vocab_size: int
    eos_token_ids: list[int]
    max_model_len: int
    num_kv_blocks: int


class CacheReady(msgspec.Struct, tag="cache_ready"):
    rank: int


class Executed(msgspec.Struct, tag="executed", array_like=True, gc=False):
    output: StepOutput


class Failed(msgspec.Struct, tag="failed"):
    rank: int
    message: str


WorkerCommand = InitCache | Execute | Shutdown
WorkerReply = Ready | CacheReady | Executed | Failed

command_decoder = msgspec.msgpack.Decoder(WorkerCommand)
reply_decoder = msgspec.msgpack.Decoder(WorkerReply)
