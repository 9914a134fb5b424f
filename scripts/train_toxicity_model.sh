#!/usr/bin/env bash
# Rebuild the shipped toxicity model (filters/models/toxicity-v1.htox) from the labeled data:
# the training 80% of ../shared/data/toxicity_labeled/combined.jsonl (the peers' salted 80/20
# split; the held-out 20% is scored and printed). Deterministic: the same data and harman
# version give the same file, byte for byte.
#
#   bash scripts/train_toxicity_model.sh [path/to/combined.jsonl]
set -euo pipefail
cd "$(dirname "$0")/.."
data="${1:-../shared/data/toxicity_labeled/combined.jsonl}"
cargo run --release --locked -q -- train-classifier "$data" \
  --name toxicity-v1 --languages en --out filters/models/toxicity-v1.htox
