#!/usr/bin/env bash
# harman's CPU trainer side by side with llm.c's train_gpt2.c on this machine, same model,
# same B=4, T=64, same thread count (the numbers in BENCHMARKS.md "Train").
#
#   bash scripts/bench_llmc.sh LLMC_DIR [PRESET…]     (default presets: tiny gpt2-124m)
#
# LLMC_DIR is a checkout of https://github.com/karpathy/llm.c (train_gpt2.c, llmc/). It is
# built as llm.c's Makefile builds it (gcc -Ofast -march=native -fopenmp -DOMP); each model is
# written by `harman bench train --export-llmc` in llm.c's checkpoint format (same parameter
# order, same initialization), token shards come from `harman tokenize` on the bundled
# Pile-style sample, and llm.c's `step N: ... (took X ms)` lines are read after its first step.
# THREADS (default: all cores) sets both OMP_NUM_THREADS and harman's --threads.
set -euo pipefail
llmc=$(cd "${1:?usage: bench_llmc.sh LLMC_DIR [PRESET…]}" && pwd)
shift
presets=("${@:-tiny gpt2-124m}")
read -r -a presets <<<"${presets[*]}"
root=$(cd "$(dirname "$0")/.." && pwd)
threads=${THREADS:-$(nproc)}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cargo build --release --locked -q -p harman-pipeline --manifest-path "$root/Cargo.toml"
harman="$root/target/release/harman"
gcc -Ofast -Wno-unused-result -Wno-ignored-pragmas -Wno-unknown-attributes -march=native \
    -fopenmp -DOMP "$llmc/train_gpt2.c" -I"$llmc" -lm -o "$work/train_gpt2"

"$harman" -q tokenize "$root/tests/data/text/pile_style/shard-00.jsonl.zst" --output "$work/tok" \
    --options 'val_fraction = 0.2' >/dev/null
mkdir -p "$work/run/dev/data/tinyshakespeare"
ln -s "$work/tok/tokenize/train_000000.bin" "$work/run/dev/data/tinyshakespeare/tiny_shakespeare_train.bin"
ln -s "$work/tok/tokenize/val_000000.bin" "$work/run/dev/data/tinyshakespeare/tiny_shakespeare_val.bin"

printf '| model | threads | harman ms/step | harman tok/s | llm.c ms/step | llm.c tok/s | harman / llm.c |\n'
printf '|---|---|---|---|---|---|---|\n'
for preset in "${presets[@]}"; do
    out=$("$harman" bench train --preset "$preset" --batch 4 --seq 64 --steps 5 \
        --threads "$threads" --export-llmc "$work/run/gpt2_124M.bin")
    ours=$(sed -n 's/.*(\([0-9.]*\) ms\/step.*/\1/p' <<<"$out")
    # llm.c's main runs 40 steps with sampling at 20 and 40; it is stopped after step 10, and
    # the median of steps 1-10 is taken (its first step allocates).
    theirs=$(cd "$work/run" && OMP_NUM_THREADS=$threads stdbuf -oL "$work/train_gpt2" | \
        awk '/^step [0-9]+: / { n = $2 + 0; ms = $0; sub(/.*\(took /, "", ms); sub(/ ms\).*/, "", ms);
             if (n > 0) print ms; if (n >= 10) exit }' | \
        sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}' || true)
    awk -v p="$preset" -v t="$threads" -v o="$ours" -v l="$theirs" 'BEGIN {
        printf "| %s | %d | %.1f | %.0f | %.1f | %.0f | %.2f× |\n", p, t, o, 256000/o, l, 256000/l, l/o }'
done
