"""Profiling the device an engine will run on, before it starts (so nothing else competes for the
device), at the sizes that engine's flags allow: token counts up to its token budget, decode
batches up to its max_num_seqs, contexts up to its max_model_len. `vidur profile` runs in a child
process with the environment the engine gives its workers (their thread settings), on the
engine's device, dtype, attention backend and block size."""

import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

TOKEN_STEPS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048,
               3072, 4096, 6144, 8192)


@dataclass(frozen=True, slots=True)
class EngineKnobs:
    """What `python -m engine <engine_args>` will run, as far as its flags say before it starts."""

    model_dir: Path
    device: str
    dtype: str
    attention_backend: str
    block_size: int
    token_budget: int
    max_num_seqs: int
    max_model_len: int
    num_workers: int

    def profile_arguments(self, output_dir: Path, repeats: int) -> list[str]:
        tokens = sorted({n for n in TOKEN_STEPS if n < self.token_budget} | {self.token_budget})
        chunks = sorted({n for n in (16, 64, 256) if n < self.token_budget} | {self.token_budget})
        longest = self.max_model_len - 1
        contexts = sorted({n for n in (0, 256, 1024) if n + max(chunks) <= longest} or {0})
        batches = sorted({n for n in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512) if n < self.max_num_seqs}
                         | {self.max_num_seqs})
        decode_contexts = sorted({n for n in (16, 128, 512, 1024, 2048) if n < longest} | {longest})
        arguments = ["profile", "--model", str(self.model_dir), "--output-dir", str(output_dir),
                     "--dtype", self.dtype, "--attention-backend", self.attention_backend,
                     "--block-size", str(self.block_size), "--repeats", str(repeats)]
        if self.device != "auto":
            arguments += ["--device", self.device]
        for flag, values in (("--num-tokens", tokens), ("--prefill-chunks", chunks), ("--prefill-contexts", contexts),
                             ("--decode-batch-sizes", batches), ("--decode-contexts", decode_contexts)):
            arguments += [flag, *map(str, values)]
        return arguments


def engine_knobs(engine_args: Sequence[str]) -> EngineKnobs:
    """Reads the engine's flags with the engine's own parser and resolves its scheduler's sizes."""
    from engine.entrypoints.cli import build_parser
    from engine.model_config import load_model_config
    from engine.scheduler import SchedulerConfig

    parser = build_parser()
    try:
        args = parser.parse_args(list(engine_args))
    except SystemExit:
        raise ValueError(f"the engine does not accept --engine-args {' '.join(engine_args)!r}") from None
    if args.model is None:
        from engine.demo_model import default_demo_model_dir

        model_dir = default_demo_model_dir()
    else:
        model_dir = args.model
    model = load_model_config(model_dir)
    scheduler = SchedulerConfig(
        policy=args.policy,
        token_budget=args.token_budget,
        max_num_seqs=args.max_num_seqs,
        max_model_len=args.max_model_len or model.max_position_embeddings,
        block_size=args.block_size,
    )
    return EngineKnobs(
        model_dir=Path(model_dir).resolve(),
        device=args.device,
        dtype=args.dtype,
        attention_backend=args.attention_backend,
        block_size=scheduler.block_size,
        token_budget=scheduler.token_budget,
        max_num_seqs=scheduler.max_num_seqs,
        max_model_len=scheduler.max_model_len,
        num_workers=args.tp * args.pp,
    )


def profile_device(knobs: EngineKnobs, output_dir: Path, repeats: int) -> Path:
    """Runs `vidur profile` for the engine's model and device; returns the device's folder."""
    from engine.entrypoints.cli import worker_environment

    environment = {**os.environ, **worker_environment(knobs.device, knobs.num_workers)}
    command = [sys.executable, "-m", "vidur.cli", *knobs.profile_arguments(output_dir, repeats)]
    finished = subprocess.run(command, env=environment, capture_output=True, text=True, check=False)
    if finished.returncode != 0:
        raise RuntimeError(f"vidur profile failed:\n{finished.stderr[-3000:]}")
    devices = sorted(output_dir.glob("compute/*/device.json"))
    if len(devices) != 1:
        raise RuntimeError(f"vidur profile wrote {len(devices)} device specs under {output_dir}, expected one")
    return devices[0].parent
