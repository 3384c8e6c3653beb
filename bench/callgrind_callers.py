#!/usr/bin/env python3
# Who calls a function, or what it calls, per request, from the second dump of a `--count N` run
# (see callgrind_summary.py for the valgrind command):
#   python3 bench/callgrind_callers.py cg.out.2 '^malloc$' 4000             # callers, inclusive
#   python3 bench/callgrind_callers.py cg.out.2 'Engine::execute' 4000 callees
# Each row: instructions per request spent through that edge, calls per request, the other end.
import sys, re, collections
path, pat, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
mode = sys.argv[4] if len(sys.argv) > 4 else 'callers'
edges = collections.Counter(); counts = collections.Counter()
fn = cfn = None; pending = None
for line in open(path, errors='replace'):
    line = line.rstrip('\n')
    if line.startswith('fn='): fn = line[3:]; pending=None; continue
    if line.startswith('cfn='): cfn = line[4:]; continue
    if line.startswith('calls='): pending = int(line[6:].split()[0]); continue
    if pending is not None and line and (line[0].isdigit() or line[0] in '+-*'):
        parts = line.split()
        edges[(fn, cfn)] += int(parts[1]); counts[(fn, cfn)] += pending; pending = None
rows = collections.Counter(); rc = collections.Counter()
for (a, b), c in edges.items():
    if mode == 'callers' and re.search(pat, b): rows[a] += c; rc[a] += counts[(a,b)]
    if mode == 'callees' and re.search(pat, a): rows[b] += c; rc[b] += counts[(a,b)]
for f, c in rows.most_common(40):
    print(f"{c//n:>8} {rc[f]/n:6.2f} calls  {f[:160]}")
