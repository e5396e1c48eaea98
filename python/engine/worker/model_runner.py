"""Runs the model on one tensor-parallel rank: load the shard, size and hold the paged KV cache,
and execute the engine's steps (see `engine.wire.step`).

Every rank of a tensor-parallel group gets the same `StepInput` and calls `execute`; the ranks
run the forward pass together (their collectives meet inside the layers), rank 0 samples, and
it broadcasts the sampled tokens, so every rank appends the same tokens and returns the same
`StepOutput`.
"""

import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from engine.worker.attention import AttentionMetadata, kv_cache_shape, select_backend
from engine.worker.cuda_graphs import capture_decode_graphs, padded_decode_peak_bytes
from engine.worker.decode_buckets import DecodeBuckets
from engine.worker.forward_clock import ForwardClock
from engine.model_config import ModelConfig, load_model_config
from engine.worker.model.loader import load_model, resolve_dtype
from engine.wire.runner_config import ModelInfo, ModelRunnerConfig
from engine.worker.model.parallel import PipelineStage, TensorParallel, min_over_all_ranks
from engine.worker.padded_decode import PaddedDecode
from engine.worker.request_table import RequestTable, StepWork
from engine.worker.logits_processors import TokenHistory
from engine.worker.sampling import Sampler, SamplingRow, top_logprobs
from engine.wire.sampling_params import SamplingParams
from engine.wire.step import NewRequest, PromptLogprobs, StepEntry, StepInput, StepOutput, TokenLogprobs

__all__ = [
    "ModelInfo",
    "ModelRunner",
    "ModelRunnerConfig",
    "cuda_device_index",
    "kv_cache_num_blocks",
    "largest_step",
]
DEFAULT_CPU_KV_CACHE_GIB = 1.0


class ModelRunner:
    """Joins the process group (more than one process: gloo on CPU, NCCL on GPU) and loads its
    shard: global rank `rank` is tensor-parallel rank `rank % tp` of pipeline stage `rank // tp`."""

    def __init__(self, config: ModelRunnerConfig, rank: int = 0) -> None:
        if config.device == "auto":
            config = replace(config, device="cuda" if torch.cuda.is_available() else "cpu")
        self.config = config
        model_config = load_model_config(config.model)
        model_config.check_tensor_parallel(config.tensor_parallel_size)
        tp_size = config.tensor_parallel_size
        self.stage = PipelineStage.of(
            rank // tp_size, config.pipeline_parallel_size, model_config.num_layers, tp_size, rank % tp_size
        )
        max_model_len = config.max_model_len or model_config.max_position_embeddings
        if max_model_len > model_config.max_position_embeddings:
            raise ValueError(
                f"max_model_len {max_model_len} exceeds the model's max_position_embeddings "
                f"({model_config.max_position_embeddings})"
            )
        self.device = self._init_device(config, rank)
        dtype = resolve_dtype(config.dtype, model_config, self.device)
        self.backend = select_backend(
            config.attention_backend,
            device=self.device,
            dtype=dtype,
            head_dim=model_config.head_dim,
            block_size=config.block_size,
            max_model_len=max_model_len,
        )
        self.tp = TensorParallel(rank % tp_size, tp_size, self._init_distributed(config, rank))
        self.model = load_model(
            Path(config.model),
            model_config,
            dtype=dtype,
            device=self.device,
            tp=self.tp,
            backend=self.backend,
            max_positions=max_model_len,
            stage=self.stage,
        )
        self.num_local_kv_heads = self.model.attention_layers[0].num_kv_heads
        self.hidden_size = model_config.hidden_size
        self.model_info = self._describe(model_config, dtype, max_model_len)
        self.dtype = dtype
        # One process samples: the first tensor-parallel rank of the last stage.
        samples = self.tp.is_first and self.stage.is_last
        self.sampler = Sampler(self.device, config.seed, model_config.eos_token_ids) if samples else None
        self.kv_caches: list[torch.Tensor] = []
        self.requests: RequestTable | None = None
        self.padded_decode: PaddedDecode | None = None
        """What `init_kv_cache` did about CUDA graphs, in words (the engine logs it)."""
        self.cuda_graphs = ""
        self._graph_bytes_reserved: int | None = None

    def _describe(self, model_config: ModelConfig, dtype: torch.dtype, max_model_len: int) -> ModelInfo:
        element_bytes = torch.empty((), dtype=dtype).element_size()
        kv_bytes_per_token = 2 * self.stage.num_layers * self.num_local_kv_heads * model_config.head_dim * element_bytes
        return ModelInfo(
            architecture=model_config.architecture,
            vocab_size=model_config.vocab_size,
            bos_token_id=model_config.bos_token_id,
            eos_token_ids=model_config.eos_token_ids,
            max_model_len=max_model_len,
            num_layers=model_config.num_layers,
            hidden_size=model_config.hidden_size,
            num_heads=model_config.num_heads,
            num_kv_heads=model_config.num_kv_heads,
            head_dim=model_config.head_dim,
            dtype=str(dtype).removeprefix("torch."),
            device=self.device.type,
            tensor_parallel_size=self.tp.size,
            pipeline_parallel_size=self.stage.size,
            block_size=self.config.block_size,
            attention_backend=self.backend.name,
            kv_cache_bytes_per_block=kv_bytes_per_token * self.config.block_size,
        )

    @staticmethod
    def _init_device(config: ModelRunnerConfig, rank: int) -> torch.device:
        if config.device == "cpu":
            return torch.device("cpu")
        if not torch.cuda.is_available():
            raise ValueError("device 'cuda' was asked for, but CUDA is not available")
        index = cuda_device_index(rank, config.num_processes, torch.cuda.device_count())
        torch.cuda.set_device(index)
        return torch.device("cuda", index)

    @staticmethod
    def _init_distributed(config: ModelRunnerConfig, rank: int) -> Any:
        """Joins the model's processes; returns this stage's tensor-parallel group (None when
        the default group is it, or there is no group at all)."""
        if config.num_processes == 1:
            return None
        if dist.is_initialized():
            raise ValueError("torch.distributed is already initialized in this process; one runner per process")
        dist.init_process_group(
            backend="nccl" if config.device == "cuda" else "gloo",
            init_method=config.distributed_init_method,
            world_size=config.num_processes,
            rank=rank,
        )
        if config.pipeline_parallel_size == 1:
            return None
        tp_size = config.tensor_parallel_size
        # Every process creates every stage's group, in the same order.
        groups = [
            dist.new_group(list(range(stage * tp_size, (stage + 1) * tp_size)))
            for stage in range(config.pipeline_parallel_size)
        ]
        return groups[rank // tp_size]

    def determine_num_kv_blocks(self) -> int:
        """How many KV blocks fit; every rank calls it and gets the same figure (the smallest rank's)."""
        config = self.config
        if config.num_kv_blocks is not None:
            num_blocks = config.num_kv_blocks
        elif self.device.type == "cpu":
            gib = config.kv_cache_memory_gib or DEFAULT_CPU_KV_CACHE_GIB
            num_blocks = int(gib * 2**30 // self.model_info.kv_cache_bytes_per_block)
        else:
            num_blocks = self._profile_gpu_num_blocks()
        if num_blocks < 1:
            raise ValueError(
                f"no KV block fits: one block takes {self.model_info.kv_cache_bytes_per_block} bytes on this rank"
            )
        return min_over_all_ranks(num_blocks, self.device)

    def init_kv_cache(self, num_blocks: int, *, pad_decodes: bool | None = None) -> None:
        """Allocates `num_blocks` KV blocks (the scheduler's), then captures the decode graphs when
        they apply (`graphs_off_reason`). `pad_decodes`: run decode-only steps at padded shapes
        (`engine.worker.padded_decode`), which takes one more block, the padding block; None:
        when graphs are captured. True without graphs runs the padded path eagerly."""
        if num_blocks < 1:
            raise ValueError(f"num_blocks must be at least 1, got {num_blocks}")
        if self.requests is not None:
            raise ValueError("the KV cache is already initialised")
        off_reason = self.graphs_off_reason()
        if pad_decodes is None:
            pad_decodes = off_reason is None
        if pad_decodes and (not self.backend.captures_decode or self.stage.size > 1):
            raise ValueError(
                f"padded decodes need one pipeline stage and an attention backend with a fixed-shape decode "
                f"(not {self.backend.name!r})"
            )
        self.kv_caches = self._allocate_kv_cache(num_blocks + 1 if pad_decodes else num_blocks)
        self.requests = RequestTable(
            vocab_size=self.model_info.vocab_size,
            max_model_len=self.model_info.max_model_len,
            block_size=self.config.block_size,
            num_blocks=num_blocks,
            new_generator=self.sampler.new_generator if self.sampler is not None else None,
        )
        self.cuda_graphs = f"CUDA graphs off: {off_reason or 'pad_decodes is False'}"
        if pad_decodes:
            self.padded_decode = self._padded_decode(self.kv_caches, padding_block=num_blocks)
            self.cuda_graphs += f"; decode-only steps padded to {len(self.padded_decode.buckets)} shapes, run eagerly"
        if self.padded_decode is not None and off_reason is None:
            self.cuda_graphs = self._capture_graphs(self.padded_decode)

    def _capture_graphs(self, padded: PaddedDecode) -> str:
        """Captures the decode graphs; says what it did."""
        try:
            with torch.inference_mode():
                report = capture_decode_graphs(padded, self.device)
        except RuntimeError as error:
            raise ValueError(
                f"capturing the decode CUDA graphs failed ({error}); --enforce-eager runs without them"
            ) from error
        buckets = padded.buckets
        reserved = self._graph_bytes_reserved
        return (
            f"captured {report.num_graphs} CUDA graphs in {report.seconds:.1f} s (batch sizes "
            f"{buckets.batch_sizes[0]}..{buckets.max_batch_size}, widths {buckets.widths[0]}.."
            f"{buckets.max_width} blocks), taking {report.memory_bytes / 2**20:.0f} MiB"
            + (f" ({reserved / 2**20:.0f} MiB reserved for them in the KV sizing)" if reserved is not None else "")
        )

    def graphs_off_reason(self) -> str | None:
        """Why decode-only steps do not run as CUDA graphs here, or None when they do."""
        if self.config.enforce_eager:
            return "enforce_eager is set"
        if self.device.type != "cuda":
            return f"the {self.device.type} runs eagerly"
        if self.stage.size > 1:
            return "pipeline-parallel stages run eagerly"
        if not self.backend.captures_decode:
            return f"attention backend {self.backend.name!r} cannot be captured"
        return None

    def _padded_decode(self, kv_caches: list[torch.Tensor], padding_block: int) -> PaddedDecode:
        config = self.config
        buckets = DecodeBuckets(
            max_num_seqs=config.max_num_seqs,
            max_blocks=-(-self.model_info.max_model_len // config.block_size),
            block_size=config.block_size,
            reads_pages=self.backend.decode_reads_pages,
        )
        return PaddedDecode(
            self.model,
            self.backend,
            kv_caches,
            buckets,
            padding_block=padding_block,
            block_size=config.block_size,
            hidden_size=self.hidden_size,
            dtype=self.dtype,
            device=self.device,
        )

    def _allocate_kv_cache(self, num_blocks: int) -> list[torch.Tensor]:
        shape = kv_cache_shape(num_blocks, self.config.block_size, self.num_local_kv_heads, self.model_info.head_dim)
        cache = torch.zeros((self.stage.num_layers, *shape), dtype=self.dtype, device=self.device)
        return list(cache.unbind(0))

    @torch.inference_mode()
    def execute(self, step: StepInput) -> StepOutput:
        """Applies `step` (see `engine.wire.step`) and runs it; every rank calls it with the same step.

        Raises ValueError, changing nothing, when the step does not fit the requests' state."""
        if self.requests is None:
            raise ValueError("execute() needs the KV cache: call init_kv_cache() first")
        started = time.perf_counter()
        work = self.requests.apply(step, takes_forwarded_tokens=not self.stage.is_last)
        clock = ForwardClock(self.device)
        output = self._run(self.requests, work, self.kv_caches, step.step_id, clock, self.padded_decode)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        output.execute_s = time.perf_counter() - started
        if clock.has_run:
            output.prepare_s = clock.launched_at - started
            output.forward_s = clock.elapsed_s()
        return output

    def _run(
        self,
        requests: RequestTable,
        work: StepWork,
        kv_caches: list[torch.Tensor],
        step_id: int = 0,
        clock: ForwardClock | None = None,
        padded: PaddedDecode | None = None,
    ) -> StepOutput:
        """`clock` (optional) times the forward pass: from launching the model to the logits.
        `padded` (over `kv_caches`) runs the decode-only steps that fit one of its shapes."""
        if not len(work):
            return StepOutput(step_id, b"")
        bucket = padded.bucket_for(work) if padded is not None else None
        if padded is not None and bucket is not None:
            padded.load(work, bucket)
            if clock is not None:
                clock.start()
            padded.run(bucket)
            hidden = padded.hidden[: len(work)]
        else:
            eager = self._forward_eager(work, kv_caches, clock)
            if eager is None:
                return StepOutput(step_id, b"")
            hidden = eager
        return self._sample_step(requests, work, hidden, step_id, clock)

    def _forward_eager(
        self, work: StepWork, kv_caches: list[torch.Tensor], clock: ForwardClock | None
    ) -> torch.Tensor | None:
        """The step's hidden states on the last stage; None on another (it sent them on)."""
        metadata = AttentionMetadata.build(
            query_lens=work.query_lens,
            seq_lens=work.seq_lens,
            block_tables=work.block_tables,
            block_size=self.config.block_size,
            device=self.device,
        )
        stage = self.stage
        input_ids = torch.from_numpy(work.input_ids).to(self.device, non_blocking=True) if stage.is_first else None
        prepared = self.backend.prepare(metadata)
        if clock is not None:
            clock.start()
        received = None
        if not stage.is_first:
            shape = (len(work.input_ids), self.hidden_size)
            received = stage.receive_from_previous(shape, self.dtype, self.device)
        hidden: torch.Tensor = self.model(input_ids, metadata.positions, kv_caches, prepared, received)
        if not stage.is_last:
            stage.send_to_next(hidden)
            if clock is not None:
                clock.stop()
            return None
        return hidden

    def _sample_step(
        self, requests: RequestTable, work: StepWork, hidden: torch.Tensor, step_id: int, clock: ForwardClock | None
    ) -> StepOutput:
        producing = work.producing
        chunk_ends = np.cumsum(work.query_lens)
        prompt_spans = _prompt_logprob_spans(work, chunk_ends)
        rows = (chunk_ends[producing] - 1).tolist()
        for _, first_row, first_position, end_position in prompt_spans:
            rows.extend(range(first_row, first_row + end_position - first_position))
        if not rows:
            if clock is not None:
                clock.stop()
            return StepOutput(step_id, b"")
        logits = self.model.compute_logits(
            hidden.index_select(0, torch.tensor(rows, dtype=torch.int64, device=self.device))
        )
        if clock is not None:
            clock.stop()
        logprobs: list[TokenLogprobs | None] = []
        if self.sampler is not None:
            tokens, logprobs = self._sample(requests, work, logits[: len(producing)])
        else:
            tokens = torch.empty(len(producing), dtype=torch.int64, device=self.device)
        sampled: list[int] = self.tp.broadcast_from_first(tokens).tolist() if len(producing) else []
        requests.record_sampled(work, sampled)
        prompt_logprobs = self._prompt_logprobs(work, prompt_spans, logits[len(producing) :])
        for index, _, _, end_position in prompt_spans:  # on every rank, so all compute the same rows
            work.states[index].next_prompt_logprob_position = end_position
        return StepOutput(
            step_id, np.asarray(sampled, dtype="<u4").tobytes(), logprobs=logprobs, prompt_logprobs=prompt_logprobs
        )

    def _sample(
        self, requests: RequestTable, work: StepWork, logits: torch.Tensor
    ) -> tuple[torch.Tensor, list[TokenLogprobs | None]]:
        """Greedy argmax for every row; the sampler for the rows that need more (sampling,
        penalties, logprobs...), so a batch of plain greedy decodes touches no Python objects."""
        assert self.sampler is not None
        tokens = logits.argmax(dim=-1)
        special = np.flatnonzero(requests.needs_sampler[work.rows[work.producing]])
        if not special.size:
            return tokens, []
        states = [work.states[work.producing[i]] for i in special.tolist()]
        chosen = self.sampler.sample(
            logits[torch.from_numpy(special).to(logits.device)],
            [SamplingRow(s.sampling, s.generator, TokenHistory(s.token_ids, s.num_prompt_tokens)) for s in states],
        )
        tokens[torch.from_numpy(special).to(tokens.device)] = chosen.token_ids.to(tokens.dtype)
        if not chosen.logprobs:
            return tokens, []
        logprobs: list[TokenLogprobs | None] = [None] * len(work.producing)
        for i, entry in zip(special.tolist(), chosen.logprobs, strict=True):
            logprobs[i] = entry
        return tokens, logprobs

    def _prompt_logprobs(
        self, work: StepWork, spans: list[tuple[int, int, int, int]], logits: torch.Tensor
    ) -> list[PromptLogprobs]:
        """Rank 0 only: the logprobs of each span's prompt tokens, from their rows of `logits`."""
        if self.sampler is None or not spans:
            return []
        found = []
        offset = 0
        for index, _, first_position, end_position in spans:
            state = work.states[index]
            count = end_position - first_position
            targets = torch.tensor(state.token_ids[first_position:end_position], device=logits.device)
            tokens = top_logprobs(
                logits[offset : offset + count], range(count), [state.sampling.prompt_logprobs or 0] * count, targets
            )
            found.append(PromptLogprobs(int(work.columns.ids[index]), first_position, tokens))
            offset += count
        return found

    def _profile_gpu_num_blocks(self) -> int:
        """Runs the largest step the engine may send (into a scratch cache), measures its peak memory
        beside the weights, and gives the KV cache what is left of `gpu_memory_utilization`."""
        config = self.config
        torch.cuda.synchronize(self.device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(self.device)
        free_before, total = torch.cuda.mem_get_info(self.device)
        allocated_before = torch.cuda.memory_allocated(self.device)

        step, num_blocks = largest_step(
            config.token_budget, config.max_num_seqs, self.model_info.max_model_len, config.block_size
        )
        captures = self.graphs_off_reason() is None
        scratch = self._allocate_kv_cache(num_blocks + 1 if captures else num_blocks)  # + a padding block
        scratch_bytes = sum(layer.numel() * layer.element_size() for layer in scratch)
        profile = RequestTable(
            vocab_size=self.model_info.vocab_size,
            max_model_len=self.model_info.max_model_len,
            block_size=config.block_size,
            num_blocks=num_blocks,
        )
        try:
            with torch.inference_mode():
                self._run(profile, profile.apply(step), scratch)
            torch.cuda.synchronize(self.device)
        except torch.cuda.OutOfMemoryError as error:
            raise ValueError(
                f"the largest step the engine may send ({step.num_entries} requests at "
                f"{self.model_info.max_model_len} tokens of context) does not fit on the GPU beside the "
                "weights: lower max_model_len, max_num_seqs or token_budget"
                + (" (or use flash-attn with block_size 256)" if self.backend.name == "sdpa" else "")
            ) from error
        activation_peak = torch.cuda.max_memory_allocated(self.device) - allocated_before - scratch_bytes
        graph_bytes = 0
        if captures:  # the padding block, the graphs' static buffers and their pool (measured eagerly)
            padded = self._padded_decode(scratch, padding_block=num_blocks)
            with torch.inference_mode():
                graph_bytes = self.model_info.kv_cache_bytes_per_block + padded_decode_peak_bytes(padded, self.device)
            self._graph_bytes_reserved = graph_bytes
            del padded
        del scratch
        torch.cuda.empty_cache()
        free_after, _ = torch.cuda.mem_get_info(self.device)
        if self.sampler is not None:
            self.sampler.generator.manual_seed(config.seed)

        return kv_cache_num_blocks(
            total=total,
            free_before=free_before,
            free_after=free_after,
            activation_peak=activation_peak,
            gpu_memory_utilization=config.gpu_memory_utilization,
            bytes_per_block=self.model_info.kv_cache_bytes_per_block,
            graph_bytes=graph_bytes,
        )

    def shutdown(self) -> None:
        """Frees the KV cache and the model and leaves the process group."""
        self.kv_caches = []
        self.requests = None
        if dist.is_initialized():
            dist.destroy_process_group()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


def _prompt_logprob_spans(work: StepWork, chunk_ends: np.ndarray) -> list[tuple[int, int, int, int]]:
    """For entries of requests that ask for prompt logprobs: (entry index, first hidden row,
    first prompt position, end position) of the prompt tokens this entry's rows predict and
    that were not reported yet. Row r of an entry predicts the token after it."""
    spans = []
    for index, state in enumerate(work.states):
        if state.sampling.prompt_logprobs is None:
            continue
        start = int(work.seq_lens[index] - work.query_lens[index])
        first = max(start + 1, state.next_prompt_logprob_position)
        end = min(int(work.seq_lens[index]) + 1, state.num_prompt_tokens)
        if first < end:
            chunk_start_row = int(chunk_ends[index] - work.query_lens[index])
            spans.append((index, chunk_start_row + first - 1 - start, first, end))
    return spans


def cuda_device_index(rank: int, tensor_parallel_size: int, num_visible: int) -> int:
    """The GPU rank `rank` runs on: GPU `rank` of the visible ones. Every worker sees the same GPUs
    (nothing pins one per worker), so the group needs one visible GPU per rank."""
    if num_visible < tensor_parallel_size:
        raise ValueError(
            f"tensor_parallel_size {tensor_parallel_size} needs {tensor_parallel_size} GPUs, one per rank, "
            f"but torch.cuda.device_count() is {num_visible} (see CUDA_VISIBLE_DEVICES)"
        )
    return rank


def kv_cache_num_blocks(
    *,
    total: int,
    free_before: int,
    free_after: int,
    activation_peak: int,
    gpu_memory_utilization: float,
    bytes_per_block: int,
    graph_bytes: int = 0,
) -> int:
    """How many KV blocks fit in `gpu_memory_utilization` of the device's `total` bytes beside the
    profiled step's activation peak, the CUDA graphs' memory (`graph_bytes`) and the memory in
    use without them. The latter is the larger of
    what was in use before the step (`total - free_before`) and after it, once PyTorch's cache is
    emptied (`total - free_after`): the step may allocate outside PyTorch's allocator (cuBLAS
    workspaces, for one), where its peak statistics do not look."""
    used = total - min(free_before, free_after)
    budget = total * gpu_memory_utilization - used - activation_peak - graph_bytes
    if budget < bytes_per_block:
        graphs = f", {graph_bytes / 2**30:.2f} GiB for CUDA graphs" if graph_bytes else ""
        raise ValueError(
            f"no room for the KV cache: {used / 2**30:.2f} GiB in use besides activations, a "
            f"{activation_peak / 2**30:.2f} GiB activation peak{graphs}, and gpu_memory_utilization "
            f"{gpu_memory_utilization} of {total / 2**30:.2f} GiB"
        )
    return int(budget // bytes_per_block)


def largest_step(
    token_budget: int, max_num_seqs: int, max_model_len: int, block_size: int
) -> tuple[StepInput, int]:
    """The most memory-hungry step the engine may send, and the blocks it needs.

    Every request's context is `max_model_len` tokens and its chunk is the last tokens of it:
    chunks as long as allowed (each after at least one cached token, so attention takes its
    masked path) beside as many requests as allowed, the rest decodes. So the linear layers run
    on the whole token budget, attention gathers its widest contexts (a decode batch and every
    chunk over the longest context), and the LM head and the sampler run on every request, each
    sampling with top-k and top-p. The requests share one block table of
    ceil(max_model_len / block_size) blocks (nothing reads what the blocks hold)."""
    longest_chunk = max(1, max_model_len - 1)
    num_seqs = min(max_num_seqs, token_budget)
    lengths, spare = [], token_budget - num_seqs
    for _ in range(num_seqs):
        extra = min(spare, longest_chunk - 1)
        lengths.append(1 + extra)
        spare -= extra
    sampling = SamplingParams(temperature=1.0, top_k=50, top_p=0.9)
    num_blocks = math.ceil(max_model_len / block_size)
    prompt = [0] * max_model_len
    entries = [
        StepEntry(request_id, request_id, length, max_model_len - length, True, range(num_blocks))
        for request_id, length in enumerate(lengths)
    ]
    new_requests = [NewRequest(request_id, prompt, sampling) for request_id in range(num_seqs)]
    return StepInput.from_entries(-1, entries, new_requests), num_blocks
