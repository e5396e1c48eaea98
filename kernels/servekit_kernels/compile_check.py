"""Compiles every kernel for a CUDA GPU without one: Triton's compiler (ptxas included in its
wheel) lowers each kernel to a cubin for `--arch` (default 90, Hopper) in float16, bfloat16 and
float32, at Llama-3-8B's attention shape (32 query heads over 8 KV heads of 128). This catches
what the CPU interpreter cannot: code that does not lower (types, tile shapes, shared memory).

Usage: python -m servekit_kernels.compile_check [--arch 90]   (without TRITON_INTERPRET)
Prints each kernel's shared memory; exits 1 when one does not compile.
"""

import argparse
import os
import sys
from typing import Any

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from servekit_kernels import kv_cache_write, paged_decode, paged_prefill, rotary

rms_norm_module = sys.modules["servekit_kernels.rms_norm"]
silu_and_mul_module = sys.modules["servekit_kernels.silu_and_mul"]


def kernels(dtype: str) -> list[tuple[Any, dict[str, str], dict[str, Any]]]:
    """(kernel, pointer and float argument types (the rest are i32), constexprs) to compile."""
    data = f"*{dtype}"
    precision = "ieee" if dtype == "fp32" else "tf32"
    attention = {name: data for name in ("query_ptr", "key_cache_ptr", "value_cache_ptr", "output_ptr")}
    attention |= {"block_tables_ptr": "*i32", "seq_lens_ptr": "*i32", "scale_log2": "fp32"}
    partials = {"partial_output_ptr": "*fp32", "partial_max_ptr": "*fp32", "partial_sum_ptr": "*fp32"}
    decode = dict(GROUP=4, GROUP_PAD=16, HEAD_DIM=128, DIM_PAD=128, TILE_SIZE=paged_decode.TILE, PRECISION=precision)
    prefill_types = attention | {"query_start_loc_ptr": "*i32", "tile_requests_ptr": "*i32", "tile_offsets_ptr": "*i32"}
    kv = {name: data for name in ("key_ptr", "value_ptr", "key_cache_ptr", "value_cache_ptr")} | {"slot_mapping_ptr": "*i64"}
    norm = {name: data for name in ("hidden_ptr", "residual_ptr", "weight_ptr", "output_ptr", "sum_ptr")} | {"eps": "fp32"}
    return [
        (paged_decode._decode_split_kernel, attention | partials, decode | {"SINGLE_SPLIT": True}),
        (paged_decode._decode_split_kernel, attention | partials, decode | {"SINGLE_SPLIT": False}),
        (paged_decode._decode_merge_kernel, {"output_ptr": data} | partials, dict(HEAD_DIM=128, DIM_PAD=128, SPLITS_PAD=32)),
        (
            paged_prefill._prefill_kernel,
            prefill_types,
            dict(GROUP=4, GROUP_PAD=4, BLOCK_Q=paged_prefill.block_q(4), HEAD_DIM=128, DIM_PAD=128,
                 TILE_SIZE=paged_prefill.TILE, PRECISION=precision),
        ),
        (kv_cache_write._write_kv_cache_kernel, kv, dict(NUM_KV_HEADS=8, HEAD_DIM=128, HEADS_PAD=8, DIM_PAD=128,
                                                        TOKENS=kv_cache_write.TOKENS_PER_PROGRAM)),
        (rms_norm_module._rms_norm_kernel, norm, dict(HIDDEN_SIZE=4096, SIZE_PAD=4096, HAS_RESIDUAL=True)),
        (rotary._rotary_kernel, {"query_ptr": data, "key_ptr": data, "positions_ptr": "*i64", "inv_freq_ptr": "*fp32"},
         dict(HALF=64, HEADS_PAD=32, KV_HEADS_PAD=8, HALF_PAD=64)),
        (silu_and_mul_module._silu_and_mul_kernel, {"gate_up_ptr": data, "output_ptr": data},
         dict(BLOCK_SIZE=silu_and_mul_module.BLOCK)),
    ]


def compile_for(kernel: Any, types: dict[str, str], constexprs: dict[str, Any], target: GPUTarget) -> int:
    """Shared memory (bytes) of the compiled kernel."""
    names = kernel.arg_names
    signature = {name: "constexpr" if name in constexprs else types.get(name, "i32") for name in names}
    source = ASTSource(fn=kernel, signature=signature, constexprs={(names.index(k),): v for k, v in constexprs.items()})
    return int(triton.compile(source, target=target).metadata.shared)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", type=int, default=90, help="CUDA compute capability as one number (80, 90)")
    args = parser.parse_args()
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        parser.error("unset TRITON_INTERPRET: the interpreter compiles nothing")
    target = GPUTarget("cuda", args.arch, 32)
    failed = 0
    for dtype in ("fp16", "bf16", "fp32"):
        for kernel, types, constexprs in kernels(dtype):
            try:
                shared = compile_for(kernel, types, constexprs, target)
            except Exception as error:  # report every kernel, not only the first failure
                failed += 1
                print(f"sm_{args.arch} {dtype} {kernel.__name__}: FAILED: {error}")
            else:
                print(f"sm_{args.arch} {dtype} {kernel.__name__}: ok, {shared} bytes of shared memory")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
