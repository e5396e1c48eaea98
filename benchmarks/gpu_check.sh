#!/usr/bin/env bash
# The GPU checks and figures of the fast path (kernels, CUDA graphs), in one run of at most 14
# minutes (the steps' limits: 150 + 150 + 120 + 420 s) on an H100/H200 host with Python 3.12 and
# PyTorch (Triton included), no Rust, no flash-attn, no network:
#   benchmarks/gpu_check.sh --bundle DIR [--out DIR]   # DIR made by: scripts/bundle --python 3.12 --out DIR [--engine-only]
#   benchmarks/gpu_check.sh --cpu-dry-run [--out DIR]  # the same steps, small, on the CPU, from this checkout
# Steps (each under its own time limit; a failing step does not stop the next, the exit status
# is the number of failed steps):
#   1. install the bundle into a venv that sees the host's PyTorch (--system-site-packages);
#   2. the kernel tests on CUDA (tests/kernels when present; the dry run uses TRITON_INTERPRET=1);
#   3. the CUDA-graph tests: the demo model in bf16 greedy as transformers, graph replays equal
#      to the padded path run eagerly (tests/engine_model/test_cuda_graphs.py), and the padded-path tests;
#   4. benchmarks/model_decode.py on a Llama-3-8B-shaped bf16 model (random weights) at batch 1
#      and 64, attention backend triton (its kernels, fused layers and captured decode): eager vs
#      CUDA graphs vs transformers, MBU against the copy bandwidth measured in the same run, and
#      the decode attention's achieved bandwidth. (Named, not `auto`, which takes flash-attn
#      where it is installed; without it `auto` is triton, so naming it costs no extra run.)
# Logs and model_decode.json land in OUT (default $OUT, else ./gpu_check_out). PYTHON: the host's
# Python with PyTorch (default python3; the dry run: .venv/bin/python).
set -uo pipefail
cd "$(dirname "$0")/.."

usage="usage: benchmarks/gpu_check.sh (--bundle DIR | --cpu-dry-run) [--out DIR]"
bundle=""
dry_run=0
out="${OUT:-gpu_check_out}"
while [ $# -gt 0 ]; do
    case "$1" in
        --bundle) bundle="${2:?$usage}"; shift 2 ;;
        --out) out="${2:?$usage}"; shift 2 ;;
        --cpu-dry-run) dry_run=1; shift ;;
        -h|--help) echo "$usage"; exit 0 ;;
        *) echo "gpu_check.sh: unknown argument '$1'; $usage" >&2; exit 2 ;;
    esac
done
if [ "$dry_run" = 0 ] && [ ! -x "$bundle/install.sh" ]; then
    echo "gpu_check.sh: --bundle must name a folder made by scripts/bundle (no install.sh in '$bundle'); $usage" >&2
    exit 2
fi
mkdir -p "$out"
out="$(cd "$out" && pwd)"
scratch="$(mktemp -d)"  # the venv and the 16 GB model: never in OUT
trap 'rm -rf "$scratch"' EXIT
failed=0

step() {  # step NAME SECONDS COMMAND...: runs COMMAND under a time limit, its output into OUT/NAME.log
    local name="$1" limit="$2" started status
    shift 2
    echo "== $name (at most ${limit} s)"
    started=$(date +%s)
    timeout --kill-after=10 "$limit" "$@" > "$out/$name.log" 2>&1
    status=$?
    tail -n 25 "$out/$name.log"
    echo "== $name: exit $status after $(( $(date +%s) - started )) s"
    [ "$status" = 0 ] || failed=$((failed + 1))
}

if [ "$dry_run" = 1 ]; then
    python="${PYTHON:-.venv/bin/python}"
    export PYTHONPATH="$PWD/kernels:$PWD/python:$PWD/metron:$PWD/vidur"
    export TRITON_INTERPRET=1
    device_args=(--device cpu --shape demo --dtype fp32 --batch-sizes 1,4 --prompt-len 32 --decode-steps 8 --repeats 1)
else
    python="$scratch/venv/bin/python"
    host_python="${PYTHON:-python3}"  # the host's Python 3.12 with PyTorch
    step install 150 bash -c "'$host_python' -m venv --system-site-packages '$scratch/venv' && PYTHON='$python' '$bundle/install.sh'"
    unset TRITON_INTERPRET
    device_args=(--device cuda --shape llama3-8b --dtype bf16 --batch-sizes 1,64 --decode-steps 64 --repeats 2
                 --model-dir "$scratch/llama3-8b")
fi
"$python" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available() and torch.cuda.get_device_name())"

pytest=("$python" -m pytest -q -W error -p no:cacheprovider -rs)
if [ -d tests/kernels ]; then
    step kernel_tests 150 "${pytest[@]}" tests/kernels
else
    echo "== kernel_tests: no tests/kernels in this checkout, skipped"
fi
step cuda_graph_tests 120 "${pytest[@]}" tests/engine_model/test_cuda_graphs.py tests/engine_model/test_padded_decode.py
step model_decode 420 bash -c "'$python' benchmarks/model_decode.py --attention-backend triton ${device_args[*]} | tee '$out/model_decode.out'"
tail -n 1 "$out/model_decode.out" > "$out/model_decode.json" 2>/dev/null
echo "== gpu_check: $failed step(s) failed; logs in $out"
exit "$failed"
