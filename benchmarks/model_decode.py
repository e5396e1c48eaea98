"""Decode tokens per second of the model runner, beside Hugging Face transformers' `generate` on
the same weights in the same run, and beside the memory-bandwidth limit.

A model with random weights is built in the Hugging Face layout (`--shape llama3-8b`: Llama 3 8B's
shapes, bf16, for a GPU; `--shape demo`: the small demo model, for a CPU). For each batch size,
`batch` prompts of `--prompt-len` tokens are prefilled, then `--decode-steps` decode steps are
timed (greedy, every request producing a token per step).

The runner is measured eager and with CUDA graphs (`--enforce-eager`: eager only; on the CPU,
which has no graphs, the graphs' padded path run eagerly instead). The runners and transformers
are timed alternately, `--repeats` rounds each; the best round counts (background load only ever
adds time).

- runner: `ModelRunner.execute` per step, everything included (input building, forward, sampling).
- transformers: `generate` with N + 1 new tokens minus `generate` with 1 (its prefill and first
  token), so both figures are decode only; EOS is ignored by both.
- limit: a decode step reads every weight once (the embedding table aside) and each request's
  KV; at the device's measured copy bandwidth that bounds tokens/s (batch / step-bytes * bandwidth).
  MBU = (step bytes / measured step time) / bandwidth.
- attention: one layer's decode attention alone over the batch, `--attention-context` tokens of
  context each, in a cache of its own; its achieved bandwidth = KV bytes read / time, beside the
  copy bandwidth.

Usage: .venv/bin/python benchmarks/model_decode.py --device cpu --shape demo [--threads 1]
       .venv/bin/python benchmarks/model_decode.py                 # CUDA when present: llama3-8b, bf16, batch 1 and 64
       .venv/bin/python benchmarks/model_decode.py --dtype bf16 --enforce-eager --attention-backend sdpa
The last line is one JSON object.
"""

import argparse
import itertools
import json
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from engine.demo_model import build_demo_model
from engine.wire.runner_config import DTYPE_ALIASES
from engine.worker.attention import AttentionMetadata, kv_cache_shape
from engine.worker.model_runner import ModelRunner, ModelRunnerConfig
from engine.wire.runner_config import ATTENTION_BACKENDS
from engine.wire.sampling_params import SamplingParams
from engine.core.step_builder import build_step
from engine.scheduler import Scheduler, SchedulerConfig
from engine.wire.step import NewRequest

SHAPES: dict[str, dict[str, Any]] = {
    "llama3-8b": dict(
        vocab_size=128256,
        hidden_size=4096,
        intermediate_size=14336,
        num_layers=32,
        num_heads=32,
        num_kv_heads=8,
        max_position_embeddings=8192,
        rope_theta=500000.0,
        num_shards=4,
    ),
    "demo": dict(),
}
GREEDY = SamplingParams(temperature=0.0, max_tokens=1 << 20)
BLOCK_SIZE = 16
PREFILL_TOKENS_PER_STEP = 2048


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--shape", choices=sorted(SHAPES), default=None, help="default: llama3-8b on cuda, demo on cpu")
    parser.add_argument(
        "--dtype", default=None, choices=sorted(DTYPE_ALIASES), help="default: bfloat16 on cuda, float32 on cpu"
    )
    parser.add_argument("--batch-sizes", default=None, help="comma-separated; default 1,64 on cuda, 1,16 on cpu")
    parser.add_argument("--prompt-len", type=int, default=128)
    parser.add_argument("--decode-steps", type=int, default=None, help="default 128 on cuda, 32 on cpu")
    parser.add_argument("--attention-backend", default="auto", choices=ATTENTION_BACKENDS)
    parser.add_argument("--enforce-eager", action="store_true", help="measure the eager runner only (no CUDA graphs)")
    parser.add_argument(
        "--attention-context", type=int, default=None, help="tokens per request (default 4096 on cuda, 128 on cpu)"
    )
    parser.add_argument("--model-dir", type=Path, default=None, help="build (or reuse) the model here")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds per batch size; the best counts")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")
    args = parser.parse_args()
    on_gpu = args.device == "cuda"
    args.shape = args.shape or ("llama3-8b" if on_gpu else "demo")
    args.dtype = DTYPE_ALIASES[args.dtype or ("bfloat16" if on_gpu else "float32")]
    args.batch_sizes = [int(b) for b in (args.batch_sizes or ("1,64" if on_gpu else "1,16")).split(",")]
    args.decode_steps = args.decode_steps or (128 if on_gpu else 32)
    args.attention_context = args.attention_context or (4096 if on_gpu else 128)
    return args


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_bandwidth(device: torch.device) -> float:
    """Bytes per second of a large device-to-device copy (each byte read once and written once)."""
    num_bytes = (1 << 30) if device.type == "cuda" else (256 << 20)
    source = torch.ones(num_bytes // 4, dtype=torch.float32, device=device)
    target = torch.empty_like(source)
    for _ in range(3):
        target.copy_(source)
    synchronize(device)
    repeats = 20 if device.type == "cuda" else 5
    start = time.perf_counter()
    for _ in range(repeats):
        target.copy_(source)
    synchronize(device)
    return 2 * num_bytes * repeats / (time.perf_counter() - start)


def prompts_for(batch: int, prompt_len: int, vocab_size: int) -> list[list[int]]:
    generator = torch.Generator().manual_seed(batch)
    return torch.randint(3, vocab_size, (batch, prompt_len), generator=generator).tolist()


def runner_decode(runner: ModelRunner, prompts: list[list[int]], decode_steps: int, first_id: int) -> float:
    """Seconds for `decode_steps` decode steps of all prompts (after prefill and 3 warm-up
    steps), each step scheduled by the Rust scheduler and built as the engine builds it."""
    info = runner.model_info
    assert runner.requests is not None
    scheduler = Scheduler(
        SchedulerConfig(
            token_budget=max(PREFILL_TOKENS_PER_STEP, len(prompts)),
            max_num_seqs=len(prompts),
            max_model_len=info.max_model_len,
            block_size=info.block_size,
            num_blocks=runner.requests.num_blocks,
            watermark=0.0,
        )
    )
    ids = list(range(first_id, first_id + len(prompts)))
    for request_id, prompt in zip(ids, prompts, strict=True):
        scheduler.add_request(request_id, prompt_token_ids=prompt, max_new_tokens=decode_steps + 4)
    prompt_of = dict(zip(ids, prompts, strict=True))
    step_ids = itertools.count()

    def step() -> int:
        batch = scheduler.schedule(0.0)
        output = runner.execute(
            build_step(next(step_ids), batch, lambda rid: NewRequest(rid, prompt_of[rid], GREEDY))
        )
        scheduler.update(batch, output.sampled_token_ids)
        return batch.num_decodes

    while step() < len(prompts):  # prefills, then the first decode of all
        pass
    for _ in range(2):
        step()
    start_time = time.perf_counter()
    for _ in range(decode_steps):
        step()
    elapsed = time.perf_counter() - start_time
    while len(scheduler):
        step()
    return elapsed


def hf_decode(model: Any, prompts: list[list[int]], decode_steps: int, device: torch.device) -> float:
    """Seconds `generate` spends on `decode_steps` tokens beyond its first (prefill) token."""
    input_ids = torch.tensor(prompts, device=device)
    attention_mask = torch.ones_like(input_ids)

    def timed(new_tokens: int) -> float:
        synchronize(device)
        start = time.perf_counter()
        model.generate(input_ids, attention_mask=attention_mask, max_new_tokens=new_tokens, do_sample=False)
        synchronize(device)
        return time.perf_counter() - start

    timed(4)  # warm-up
    return timed(1 + decode_steps) - timed(1)


def weight_bytes_per_step(runner: ModelRunner) -> int:
    """Bytes of every parameter a decode step reads: all but the embedding table (only B rows of it)."""
    model = runner.model
    total = sum(p.numel() * p.element_size() for p in model.parameters())
    embedding = model.model.embed_tokens.weight
    if model.config.tie_word_embeddings:
        return total
    return total - embedding.numel() * embedding.element_size()


def main() -> None:
    args = parse_args()
    device = torch.device(args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: CUDA is not available (try --device cpu --shape demo)")
    shape = dict(SHAPES[args.shape], dtype=args.dtype)
    with tempfile.TemporaryDirectory() as scratch:
        model_dir = args.model_dir or Path(scratch) / "model"
        if not (model_dir / "config.json").is_file():
            started = time.perf_counter()
            build_demo_model(model_dir, **shape)
            print(f"built {args.shape} ({args.dtype}) in {time.perf_counter() - started:.0f} s at {model_dir}")
        results = run(args, device, model_dir)
    print(json.dumps(results))


def build_runner(args: argparse.Namespace, model_dir: Path, *, eager: bool) -> ModelRunner:
    """`eager`: every step eager; else on CUDA the decode graphs, on the CPU their padded path."""
    max_batch = max(args.batch_sizes)
    max_len = args.prompt_len + args.decode_steps + 8
    num_blocks = max_batch * math.ceil((max_len + 4) / BLOCK_SIZE)
    runner = ModelRunner(
        ModelRunnerConfig(
            model=str(model_dir),
            dtype=args.dtype,
            device=args.device,
            attention_backend=args.attention_backend,
            block_size=BLOCK_SIZE,
            max_model_len=max_len,
            num_kv_blocks=num_blocks,
            max_num_seqs=max_batch,
            enforce_eager=eager,
        )
    )
    runner.init_kv_cache(num_blocks, pad_decodes=None if eager or args.device == "cuda" else True)
    return runner


def attention_bandwidth(runner: ModelRunner, batch: int, context: int, repeats: int) -> float:
    """Bytes per second one layer's decode attention reads (each request's keys and values of
    `context` tokens) over `batch` decodes, each on blocks of its own."""
    info = runner.model_info
    layer = runner.model.attention_layers[0]
    device = runner.device
    blocks_per_request = math.ceil(context / info.block_size)
    shape = kv_cache_shape(batch * blocks_per_request, info.block_size, layer.num_kv_heads, layer.head_dim)
    cache = torch.randn(shape, device=device).to(runner.dtype)
    metadata = AttentionMetadata.build(
        query_lens=[1] * batch,
        seq_lens=[context] * batch,
        block_tables=torch.arange(batch * blocks_per_request).view(batch, blocks_per_request).numpy(),
        block_size=info.block_size,
        device=device,
    )
    dtype = runner.dtype
    query = torch.randn(batch, layer.num_heads, layer.head_dim, dtype=dtype, device=device)
    key = torch.randn(batch, layer.num_kv_heads, layer.head_dim, dtype=dtype, device=device)
    value = torch.randn_like(key)
    with torch.inference_mode():
        prepared = runner.backend.prepare(metadata)
        for _ in range(3):
            runner.backend.forward(query, key, value, cache, prepared, layer)
        synchronize(device)
        start = time.perf_counter()
        for _ in range(repeats):
            runner.backend.forward(query, key, value, cache, prepared, layer)
        synchronize(device)
    elapsed = (time.perf_counter() - start) / repeats
    kv_bytes = 2 * batch * context * layer.num_kv_heads * layer.head_dim * cache.element_size()
    return kv_bytes / elapsed


def run(args: argparse.Namespace, device: torch.device, model_dir: Path) -> dict[str, Any]:
    runners = {"eager": build_runner(args, model_dir, eager=True)}
    if not args.enforce_eager:
        runners["graphs" if device.type == "cuda" else "padded"] = build_runner(args, model_dir, eager=False)
    for name, runner in runners.items():
        print(f"{name}: {runner.cuda_graphs}")
    runner = runners["eager"]
    info = runner.model_info
    bandwidth = measure_bandwidth(device)
    weight_bytes = weight_bytes_per_step(runner)
    kv_bytes_per_token = info.kv_cache_bytes_per_block // info.block_size
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{torch.get_num_threads()} threads"
    print(
        f"device {device} ({device_name}), {args.shape} {info.dtype}, attention {info.attention_backend}, "
        f"copy bandwidth {bandwidth / 1e9:.1f} GB/s, weights read per step {weight_bytes / 1e9:.3f} GB"
    )

    from transformers import AutoModelForCausalLM

    hf: Any = AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, info.dtype))
    hf = hf.to(device).eval()
    hf.generation_config.eos_token_id = None
    hf.generation_config.pad_token_id = 0

    rows: dict[int, dict[str, float]] = {}
    first_id = 0
    for batch in args.batch_sizes:
        prompts = prompts_for(batch, args.prompt_len, info.vocab_size)
        seconds: dict[str, list[float]] = {name: [] for name in runners}
        hf_seconds = []
        for _ in range(args.repeats):  # alternated, so all see the same background load
            for name, each in runners.items():
                seconds[name].append(runner_decode(each, prompts, args.decode_steps, first_id))
                first_id += batch
            with torch.inference_mode():
                hf_seconds.append(hf_decode(hf, prompts, args.decode_steps, device))
        hf_best = min(hf_seconds)
        mean_context = args.prompt_len + 3 + args.decode_steps / 2
        step_bytes = weight_bytes + batch * mean_context * kv_bytes_per_token
        repeats = 50 if device.type == "cuda" else 5
        attention = attention_bandwidth(runner, batch, args.attention_context, repeats)
        row = dict(
            hf_tok_s=batch * args.decode_steps / hf_best,
            hf_step_ms=hf_best / args.decode_steps * 1e3,
            limit_tok_s=batch * bandwidth / step_bytes,
            limit_step_ms=step_bytes / bandwidth * 1e3,
            attention_gb_s=attention / 1e9,
            attention_of_copy=attention / bandwidth,
        )
        for name, times in seconds.items():
            step_s = min(times) / args.decode_steps
            row[f"{name}_tok_s"] = batch / step_s
            row[f"{name}_step_ms"] = step_s * 1e3
            row[f"{name}_mbu"] = step_bytes / step_s / bandwidth
            row[f"{name}_vs_hf"] = row[f"{name}_tok_s"] / row["hf_tok_s"]
        rows[batch] = row
    for each in runners.values():
        each.shutdown()

    header = f"{'batch':>6}" + "".join(f" {name + ' tok/s':>14} {'ms':>7} {'xHF':>6} {'MBU':>6}" for name in runners)
    print(header + f" {'HF tok/s':>10} {'ms':>7} {'limit tok/s':>12} {'attn GB/s':>10} {'of copy':>8}")
    for batch, row in rows.items():
        line = f"{batch:>6}"
        for name in runners:
            line += (
                f" {row[name + '_tok_s']:>14.1f} {row[name + '_step_ms']:>7.2f} {row[name + '_vs_hf']:>5.2f}x"
                f" {row[name + '_mbu']:>6.1%}"
            )
        print(
            line + f" {row['hf_tok_s']:>10.1f} {row['hf_step_ms']:>7.2f} {row['limit_tok_s']:>12.1f}"
            f" {row['attention_gb_s']:>10.1f} {row['attention_of_copy']:>8.1%}"
        )
    return dict(
        device=str(device),
        device_name=device_name,
        shape=args.shape,
        dtype=info.dtype,
        attention_backend=info.attention_backend,
        runners=list(runners),
        cuda_graphs={name: each.cuda_graphs for name, each in runners.items()},
        prompt_len=args.prompt_len,
        decode_steps=args.decode_steps,
        attention_context=args.attention_context,
        bandwidth_gb_s=round(bandwidth / 1e9, 1),
        batches={str(batch): {key: round(value, 3) for key, value in row.items()} for batch, row in rows.items()},
    )


if __name__ == "__main__":
    main()
