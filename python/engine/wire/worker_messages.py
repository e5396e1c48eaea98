"""Messages between the engine process and its worker processes, one msgpack frame each."""

import msgspec

from engine.wire.step import StepInput, StepOutput


class InitCache(msgspec.Struct, tag="init_cache", array_like=True):
    num_blocks: int


class Execute(msgspec.Struct, tag="execute", array_like=True, gc=False):
    step: StepInput


class Shutdown(msgspec.Struct, tag="shutdown", array_like=True):
    pass


class Ready(msgspec.Struct, tag="ready", array_like=True):
    """Sent once the model is loaded: what the model is and how many KV blocks fit on this rank."""

    rank: int
    vocab_size: int
    eos_token_ids: list[int]
    max_model_len: int
    num_kv_blocks: int
    block_size: int
    device: str = ""
    dtype: str = ""
    attention_backend: str = ""


class CacheReady(msgspec.Struct, tag="cache_ready", array_like=True):
    rank: int
    """What the rank did about CUDA graphs, in words (how many it captured, how long it took)."""
    cuda_graphs: str = ""


class Executed(msgspec.Struct, tag="executed", array_like=True, gc=False):
    output: StepOutput


class Failed(msgspec.Struct, tag="failed", array_like=True):
    rank: int
    message: str


WorkerCommand = InitCache | Execute | Shutdown
WorkerReply = Ready | CacheReady | Executed | Failed

command_decoder = msgspec.msgpack.Decoder(WorkerCommand)
reply_decoder = msgspec.msgpack.Decoder(WorkerReply)
