#!/usr/bin/env python3
"""The peer for `harman bench filter`: datatrove's quality filters and PII formatter on the
texts of a harman `text` Parquet part, one process, CPU time. Prints markdown table rows
(docs/s, MB/s).

    /tmp/peers-venv/bin/python scripts/bench_datatrove_filters.py OUT/text/part-00000.parquet
"""
import time, sys, pyarrow.parquet as pq
from datatrove.data import Document
texts=[t for t in pq.read_table(sys.argv[1],columns=['text']).column('text').to_pylist() if t]
docs=[Document(text=t,id=str(i)) for i,t in enumerate(texts)]
nbytes=sum(len(t.encode()) for t in texts)
from datatrove.pipeline.filters import GopherQualityFilter, GopherRepetitionFilter, C4QualityFilter, FineWebQualityFilter
from datatrove.pipeline.formatters import PIIFormatter
steps=[("gopher repetition",GopherRepetitionFilter()),("gopher quality",GopherQualityFilter()),("c4 quality",C4QualityFilter(filter_no_terminal_punct=False)),("fineweb quality",FineWebQualityFilter())]
tot=0
for name,f in steps:
    f.filter(docs[0])
    c0=time.process_time()
    for d in docs: f.filter(d)
    c=time.process_time()-c0; tot+=c
    print(f"| datatrove {name} | {len(docs)/c:.0f} | {nbytes/1e6/c:.1f} |")
print(f"| datatrove quality rules (the four) | {len(docs)/tot:.0f} | {nbytes/1e6/tot:.1f} |")
p=PIIFormatter()
c0=time.process_time()
for d in docs: p.format(d.text)
c=time.process_time()-c0
print(f"| datatrove PIIFormatter | {len(docs)/c:.0f} | {nbytes/1e6/c:.1f} |")
