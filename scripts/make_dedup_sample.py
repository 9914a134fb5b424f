#!/usr/bin/env python3
"""Cut the dedup test sample out of the shared planted near-duplicate benchmark.

Takes whole planted clusters (every copy of a family) and singletons, in cluster-id order, until
about 1,000 documents, keeping the file's order and fields; writes tests/data/dedup/sample.jsonl.zst
(zstd -19) and sample_truth.jsonl (the truth's pairs among them with Jaccard >= 0.7). Standard library + the zstd CLI.
Usage: python3 scripts/make_dedup_sample.py [SHARED_BENCH_DIR]
"""
import json
import subprocess
import sys
from pathlib import Path

bench = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/bench")
out = Path(__file__).resolve().parent.parent / "tests" / "data" / "dedup"
docs, pairs = {}, []
for line in (bench / "dedup_truth.jsonl").read_text(encoding="utf-8").splitlines():
    r = json.loads(line)
    if r["type"] == "doc":
        docs[r["doc_id"]] = r["cluster_id"]
    else:
        pairs.append(r)
sizes = {}
for c in docs.values():
    sizes[c] = sizes.get(c, 0) + 1
chosen, total = set(), 0
for c in sorted(sizes):
    if total >= 1000:
        break
    chosen.add(c)
    total += sizes[c]
keep = {d for d, c in docs.items() if c in chosen}
raw = subprocess.run(["zstd", "-dc", str(bench / "dedup_planted.jsonl.zst")], check=True, capture_output=True).stdout
lines = [l for l in raw.decode("utf-8").splitlines() if json.loads(l)["id"] in keep]
out.mkdir(parents=True, exist_ok=True)
subprocess.run(["zstd", "-19", "-q", "-f", "-o", str(out / "sample.jsonl.zst")], input=("\n".join(lines) + "\n").encode(), check=True)
with open(out / "sample_truth.jsonl", "w", encoding="utf-8") as f:
    for p in pairs:
        if p["a"] in keep and p["b"] in keep and p["jaccard"] >= 0.7:
            f.write(json.dumps({"a": p["a"], "b": p["b"], "jaccard": round(p["jaccard"], 4)}) + "\n")
print(f"{len(lines)} documents from {len(chosen)} clusters")
