#!/usr/bin/env bash
# Builds what scripts/gpu_check.sh runs into DIR (default .gpu, ignored by git): the release
# harman binary (xz-compressed to fit a device call's 64 MiB), the CUDA test binaries (and
# the eval's, with its data) and PyTorch's GPT-2 reference benchmark (../shared/anchors/torch_gpt2_bench.py when present).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-$root/.gpu}
mkdir -p "$dir"
cd "$root"
cargo build --release --locked -q -p harman-pipeline
strip -o "$dir/harman" target/release/harman
xz -T0 -6 -f "$dir/harman"
cargo test --release --locked --no-run -q -p harman-kernels -p harman-train -p harman-eval \
    --message-format=json 2>/dev/null |
    python3 -c '
import json, shutil, sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["test"]:
        name = m["target"]["name"]
        if name in ("cuda_ops", "cuda", "nvrtc"):
            shutil.copy(m["executable"], sys.argv[1] + "/" + name)
        elif name == "reference" and "harman-eval" in m["package_id"]:
            shutil.copy(m["executable"], sys.argv[1] + "/eval_reference")
' "$dir"
# The eval tests' and benchmark's data (HellaSwag, LAMBADA samples and the PyTorch reference).
mkdir -p "$dir/data/eval"
cp tests/data/eval/*.jsonl tests/data/eval/reference.json "$dir/data/eval/"
anchor="$root/../shared/anchors/torch_gpt2_bench.py"
[ -f "$anchor" ] && cp "$anchor" "$dir/"
ls -la "$dir"
du -sh "$dir"
