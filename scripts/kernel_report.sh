#!/usr/bin/env bash
# The compiler's view of every CUDA kernel, no GPU needed: compiles each kernels/cuda/*.cu
# (every head-size variant) with NVRTC 13.0 for sm_90, as CI does, then runs ptxas 13.0 on
# the PTX and prints each kernel's registers, shared memory, stack frame and spills; with
# SASS=1 also writes each kernel's SASS (nvdisasm) and prints its instruction mix (HMMA,
# MUFU, LDSM, LDGSTS, F2F/F2FP conversions, ...) — METHOD.md's "read what costs no device
# time". Tools come from PyPI into target/kernel-venv (nvidia-cuda-nvrtc, -nvcc for ptxas,
# -nvdisasm). Output in target/kernel-report.
#
#   bash scripts/kernel_report.sh           # resource table
#   SASS=1 bash scripts/kernel_report.sh    # + per-kernel instruction counts
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
venv=target/kernel-venv
out=target/kernel-report
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
cu13="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/nvidia/cu13"
if [ ! -x "$cu13/bin/ptxas" ] || [ ! -x "$cu13/bin/nvdisasm" ] || [ ! -e "$cu13/lib/libnvrtc.so.13" ]; then
    "$venv/bin/pip" install -q --disable-pip-version-check --no-deps \
        'nvidia-cuda-nvrtc==13.0.88' 'nvidia-cuda-nvcc==13.0.88' 'nvidia-cuda-nvdisasm==13.5.37'
fi
export LD_LIBRARY_PATH="$cu13/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
rm -rf "$out"
mkdir -p "$out"
HARMAN_REQUIRE_NVRTC=1 HARMAN_PTX_DUMP="$root/$out" \
    cargo test --release --locked -q -p harman-kernels --test nvrtc every_kernel >/dev/null
printf '%-32s %-6s %5s %7s %6s %6s\n' kernel build regs smem stack spill
for ptx in "$out"/*.ptx; do
    build=$(basename "$ptx" .ptx)
    arch=$(awk '/^\.target/ {print $2; exit}' "$ptx")
    "$cu13/bin/ptxas" -arch="${arch:-sm_90}" -v -o "$out/$build.cubin" "$ptx" 2>&1 | python3 -c '
import re, sys
build = sys.argv[1]
name = None
for line in sys.stdin:
    m = re.search(r"Compiling entry function .(\w+).", line)
    if m:
        name = m.group(1)
        stack = spill = 0
        continue
    m = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores", line)
    if m:
        stack, spill = int(m.group(1)), int(m.group(2))
    m = re.search(r"Used (\d+) registers(?:, used \d+ barriers)?(?:, (\d+) bytes smem)?", line)
    if m and name:
        print(f"{name:<32} {build:<6} {m.group(1):>5} {m.group(2) or 0:>7} {stack:>6} {spill:>6}")
        name = None
' "${build#"${build%%[0-9]*}"}"
    if [ "${SASS:-}" = 1 ]; then
        "$cu13/bin/nvdisasm" -c "$out/$build.cubin" >"$out/$build.sass"
    fi
done
if [ "${SASS:-}" = 1 ]; then
    echo
    echo "instruction mix per kernel (static counts in the SASS):"
    python3 - "$out" <<'EOF'
import collections, glob, os, re, sys
for path in sorted(glob.glob(os.path.join(sys.argv[1], "*.sass"))):
    kernel, counts = None, collections.Counter()
    def flush():
        if kernel and counts:
            top = ", ".join(f"{k} {v}" for k, v in counts.most_common(9))
            print(f"{os.path.basename(path)[:-5]} {kernel}: {sum(counts.values())} instructions; {top}")
    for line in open(path):
        m = re.match(r"\s*\.text\.(\w+):", line)
        if m:
            flush()
            kernel, counts = m.group(1), collections.Counter()
            continue
        m = re.search(r"/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_]*)", line)
        if m and kernel:
            counts[m.group(1)] += 1
    flush()
EOF
fi
