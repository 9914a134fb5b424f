#!/usr/bin/env bash
# The GPU checks, run on a machine with an NVIDIA GPU (a lent H100/H200) from binaries built
# elsewhere: `bash scripts/gpu_check.sh DIR` where DIR holds `harman` (or harman.xz), the
# test binaries `cuda_ops`, `cuda` (train), `nvrtc` and `eval_reference` (with data/eval), and
# torch_gpt2_bench.py. Runs every kernel test, the training tests against the CPU reference
# and the eval's scores against the CPU's, then the GPT-2 124M
# benchmark (B=32, T=1024; default kernels and the A/B variants below) next to PyTorch's
# (torch.compile, and eager with EAGER=1) in the same call, and prints a short table last
# (each benchmark's ratio to PyTorch, the per-step profile by kernel family). STEPS sets the
# benchmark steps (10), EXTRA=1 adds the --recompute and cuBLAS-GemmEx runs.
# scripts/gpu_pack.sh builds DIR.
set -uo pipefail
dir=${1:?usage: gpu_check.sh DIR}
cd "$dir"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:/usr/local/nvidia/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export HARMAN_KERNEL_CACHE=/tmp/harman-kernels
out=${OUT:-/tmp}
[ -f harman.xz ] && xz -d -T0 -f harman.xz
chmod +x harman cuda_ops cuda nvrtc eval_reference 2>/dev/null
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
status=0
for t in nvrtc cuda_ops cuda; do
    echo "== test $t"
    if ! timeout ${TEST_TIMEOUT:-150} ./$t --test-threads=1 --nocapture 2>&1 | tee "$out/test_$t.log" | grep -E "^test |relative error|step |loss cpu|panicked|assert"; then
        status=1
    fi
    grep -q "test result: ok" "$out/test_$t.log" || status=1
    # On a GPU machine a skipped GPU test is a failure, not a pass.
    if grep "skipped: " "$out/test_$t.log" | grep -qv "a GPU is present"; then
        echo "$t: tests skipped (no usable GPU or NVRTC?)"
        status=1
    fi
done
echo "== test eval_reference (the eval's scores on the GPU against the CPU's)"
if ! HARMAN_EVAL_DATA=$PWD/data/eval timeout ${TEST_TIMEOUT:-150} ./eval_reference gpu_scores --nocapture 2>&1 | tee "$out/test_eval.log" | grep -E "^test |difference|bits per byte|panicked|skipped"; then
    status=1
fi
grep -q "test result: ok. 1 passed" "$out/test_eval.log" && ! grep -q "skipped: " "$out/test_eval.log" || status=1
echo "== test cuda one_step, heads_of_128 with HARMAN_ATTENTION=wgmma"
if ! HARMAN_ATTENTION=wgmma timeout ${TEST_TIMEOUT:-150} ./cuda one_step heads_of_128 --test-threads=1 --nocapture 2>&1 | tee "$out/test_cuda_wgmma.log" | grep -E "^test |relative error|panicked|assert"; then
    status=1
fi
wgmma_ok=1
grep -q "test result: ok. 2 passed" "$out/test_cuda_wgmma.log" || { status=1; wgmma_ok=; }
echo "== bench"
timeout 60 ./harman bench train --device cuda --preset tiny --batch 4 --seq 64 --steps 5 2>&1 | tee "$out/bench_tiny.log"
timeout 90 ./harman bench eval --device cuda --preset gpt2-124m --batch 32 \
    --hellaswag data/eval/hellaswag_sample.jsonl --items 40 2>&1 | tee "$out/bench_eval.log"
bench() { # NAME [ENV=VALUE ...] [-- extra harman args]: GPT-2 124M, B=32, T=1024
    local name=$1 envs=() args=()
    shift
    while [ $# -gt 0 ] && [ "$1" != -- ]; do envs+=("$1"); shift; done
    [ "${1:-}" = -- ] && shift && args=("$@")
    env ${envs[@]+"${envs[@]}"} timeout 150 ./harman bench train --device cuda \
        --preset gpt2-124m --batch 32 --seq 1024 --steps ${STEPS:-10} ${args[@]+"${args[@]}"} \
        2>&1 | tee "$out/bench_$name.log"
}
bench 124m
# A/B in this call: the attention on Hopper's warpgroup MMA (flash.cu -DWGMMA), with the
# backward in 16-, 32-row chunks and on whole 64-row tiles; the mma.sync backward on whole tiles
# (the kernels before the 16-row chunks); LayerNorm's backward as two passes (before the
# fused kernel).
if [ -n "$wgmma_ok" ]; then  # (a kernel that failed its test could hang a benchmark)
    bench 124m_wgmma HARMAN_ATTENTION=wgmma
    bench 124m_wgmma_chunk32 HARMAN_ATTENTION=wgmma HARMAN_FLASH_CHUNK=32
    bench 124m_wgmma_chunk64 HARMAN_ATTENTION=wgmma HARMAN_FLASH_CHUNK=64
fi
bench 124m_chunk64 HARMAN_FLASH_CHUNK=64
bench 124m_ln_unfused HARMAN_LN_FUSED=0
# The same model with 6 heads of 128 (the attention's head-size-128 builds).
bench 124m_hs128 -- --heads 6
if [ -n "${EXTRA:-}" ]; then
    # Recomputing the GELU outputs in the backward pass (less memory); cuBLAS's GemmEx (and
    # the separate bias kernel) instead of cuBLASLt.
    bench 124m_recompute -- --recompute
    bench 124m_cublas HARMAN_GEMM=cublas
fi
# Where the step's time goes: every launch synchronized and timed (slower than the runs
# above), for the default kernels and the warpgroup-MMA attention.
HARMAN_CUDA_PROFILE=1 timeout 90 ./harman bench train --device cuda --preset gpt2-124m --batch 32 --seq 1024 --steps 2 2>&1 | tee "$out/profile_124m.log"
[ -n "$wgmma_ok" ] && HARMAN_ATTENTION=wgmma HARMAN_FLASH_CHUNK=32 HARMAN_CUDA_PROFILE=1 timeout 90 ./harman bench train --device cuda --preset gpt2-124m --batch 32 --seq 1024 --steps 2 2>&1 | tee "$out/profile_124m_wgmma.log"
if [ -f torch_gpt2_bench.py ]; then
    COMPILE=1 B=32 STEPS=${TORCH_STEPS:-30} timeout 300 python3 torch_gpt2_bench.py 2>&1 | tail -2 | tee "$out/torch_compile.log"
    [ -n "${EAGER:-}" ] && COMPILE=0 B=32 STEPS=${TORCH_STEPS:-30} timeout 120 python3 torch_gpt2_bench.py 2>&1 | tail -2 | tee "$out/torch_eager.log"
fi
echo "== summary"
echo "tests: $([ $status = 0 ] && echo all passed || echo FAILURES)"
for f in "$out"/bench_*.log; do
    echo "$(basename "$f" .log): $(grep -h "tokens/s" "$f")"
done
grep -h "tok/s\|tokens/s" "$out"/torch_*.log 2>/dev/null
python3 - "$out" <<'EOF'
import re, sys
def rate(name, pattern):
    try:
        m = re.search(pattern, open(f"{sys.argv[1]}/{name}").read())
    except OSError:
        return None
    return float(m.group(1).replace(",", "")) if m else None
import glob, os
for path in sorted(glob.glob(f"{sys.argv[1]}/bench_124m*.log")):
    name = os.path.basename(path)
    ours = rate(name, r"([\d,]+) tokens/s")
    for log, label in [("torch_compile.log", "torch.compile"), ("torch_eager.log", "eager")]:
        theirs = rate(log, r"([\d,]+) tok/s")
        if ours and theirs:
            print(f"{name[:-4]} / PyTorch {label}: {ours / theirs:.3f}x (bar for torch.compile: 1.1x)")
# Per step (the profiles ran 2 steps): GEMMs, attention, LayerNorm and the rest by kernel
# family, the default kernels beside the warpgroup-MMA attention.
def families(name):
    try:
        lines = open(f"{sys.argv[1]}/{name}").read().splitlines()
    except OSError:
        return None
    fam = {}
    for line in lines:
        m = re.match(r"^(\S.*?)\s+(\d+)\s+([\d.]+)\s+([\d.]+)$", line)
        if not m or m.group(1) == "kernel":
            continue
        k, ms = m.group(1), float(m.group(3)) / 2
        key = ("gemm" if k.startswith("gemm")
               else "attention" if k.startswith(("flash", "attention"))
               else "layernorm" if "layernorm" in k or k in ("column_sums", "sum_partials")
               else k)
        fam[key] = fam.get(key, 0.0) + ms
        if k.startswith(("flash", "attention", "layernorm")):
            fam["  " + k.replace("_wg", "")] = ms  # the same kernel in both builds
    return fam
a, b = families("profile_124m.log"), families("profile_124m_wgmma.log") or {}
if a:
    print(f"{'per step (ms)':<40} {'default':>9} {'wgmma':>9}")
    for detail in (False, True):
        keys = [k for k in set(a) | set(b) if k.startswith("  ") == detail]
        for k in sorted(keys, key=lambda k: -max(a.get(k, 0), b.get(k, 0))):
            print(f"{k:<40} {a.get(k, 0):>9.2f} {b.get(k, 0):>9.2f}")
EOF
exit $status
