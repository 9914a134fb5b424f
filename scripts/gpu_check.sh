#!/usr/bin/env bash
# The GPU checks, run on a machine with an NVIDIA GPU (a lent H100/H200) from binaries built
# elsewhere: `bash scripts/gpu_check.sh DIR` where DIR holds `harman` (or harman.xz), the
# test binaries `cuda_ops`, `cuda` (train) and `nvrtc`, and torch_gpt2_bench.py. Runs every
# kernel test and the training tests against the CPU reference, then the GPT-2 124M
# benchmark (B=32, T=1024) next to PyTorch's (torch.compile and eager) in the same call, and
# prints a short table last. scripts/gpu_pack.sh builds DIR.
set -uo pipefail
dir=${1:?usage: gpu_check.sh DIR}
cd "$dir"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:/usr/local/nvidia/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export HARMAN_KERNEL_CACHE=/tmp/harman-kernels
out=${OUT:-/tmp}
[ -f harman.xz ] && xz -d -T0 -f harman.xz
chmod +x harman cuda_ops cuda nvrtc 2>/dev/null
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
echo "== bench"
timeout 60 ./harman bench train --device cuda --preset tiny --batch 4 --seq 64 --steps 5 2>&1 | tee "$out/bench_tiny.log"
timeout 150 ./harman bench train --device cuda --preset gpt2-124m --batch 32 --seq 1024 --steps ${STEPS:-10} 2>&1 | tee "$out/bench_124m.log"
# The same step recomputing the GELU outputs in the backward pass (less memory).
timeout 150 ./harman bench train --device cuda --preset gpt2-124m --batch 32 --seq 1024 --steps ${STEPS:-10} --recompute 2>&1 | tee "$out/bench_124m_recompute.log"
# The same step with cuBLAS's GemmEx (and the separate bias kernel) instead of cuBLASLt.
HARMAN_GEMM=cublas timeout 150 ./harman bench train --device cuda --preset gpt2-124m --batch 32 --seq 1024 --steps ${STEPS:-10} 2>&1 | tee "$out/bench_124m_cublas.log"
# A/B in this call: the attention backward on whole 64-row tiles (the kernels before the
# 16-row chunks), and LayerNorm's backward as two passes (before the fused kernel).
HARMAN_FLASH_CHUNK=64 timeout 150 ./harman bench train --device cuda --preset gpt2-124m --batch 32 --seq 1024 --steps ${STEPS:-10} 2>&1 | tee "$out/bench_124m_chunk64.log"
HARMAN_LN_FUSED=0 timeout 150 ./harman bench train --device cuda --preset gpt2-124m --batch 32 --seq 1024 --steps ${STEPS:-10} 2>&1 | tee "$out/bench_124m_ln_unfused.log"
# Where the step's time goes: every launch synchronized and timed (slower than the run above).
HARMAN_CUDA_PROFILE=1 timeout 90 ./harman bench train --device cuda --preset gpt2-124m --batch 32 --seq 1024 --steps 2 2>&1 | tee "$out/profile_124m.log"
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
ours = rate("bench_124m.log", r"([\d,]+) tokens/s")
for name, label in [("torch_compile.log", "torch.compile"), ("torch_eager.log", "eager")]:
    theirs = rate(name, r"([\d,]+) tok/s")
    if ours and theirs:
        print(f"harman / PyTorch {label}: {ours / theirs:.3f}x (bar for torch.compile: 1.1x)")
EOF
exit $status
