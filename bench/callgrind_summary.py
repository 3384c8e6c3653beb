#!/usr/bin/env python3
# Instructions per request, by function, from the second dump of a `--count N` run:
#   valgrind --tool=callgrind --compress-strings=no --dump-before='*callgrind_start*' \
#     --dump-after='*callgrind_stop*' --callgrind-out-file=cg.out target/release/proxy --count 4000
#   python3 bench/callgrind_summary.py cg.out.2 40 4000            # self cost, top 40
#   python3 bench/callgrind_summary.py cg.out.2 40 4000 'classify'  # inclusive, names matching
# (Inclusive figures of recursive or re-entered frames, marked '2, count twice.)
import sys, re, collections
path = sys.argv[1]; top = int(sys.argv[2]) if len(sys.argv) > 2 else 40
n = int(sys.argv[3]) if len(sys.argv) > 3 else 1
pat = sys.argv[4] if len(sys.argv) > 4 else None
selfc = collections.Counter(); callc = collections.Counter()
fn = None; after_call = False; cfn = None; total = 0
edges = collections.Counter()
for line in open(path, errors='replace'):
    line = line.rstrip('\n')
    if line.startswith('fn='):
        fn = line[3:]; after_call = False; continue
    if line.startswith('cfn='):
        cfn = line[4:]; continue
    if line.startswith('calls='):
        after_call = True; continue
    if line.startswith('summary:'):
        total = int(line.split()[1])
    if line and (line[0].isdigit() or line[0] in '+-*'):
        parts = line.split()
        if len(parts) < 2: continue
        c = int(parts[1])
        if after_call:
            callc[fn] += c; edges[(fn, cfn)] += c; after_call = False
        else:
            selfc[fn] += c
incl = {f: selfc[f] + callc[f] for f in set(selfc) | set(callc)}
def short(f): return f[:150]
print(f"total {total} ({total//n} per request)")
if pat:
    print("== inclusive, matching", pat)
    for f, c in sorted(incl.items(), key=lambda x: -x[1]):
        if re.search(pat, f): print(f"{c//n:>8} {100*c/total:5.1f}%  {short(f)}")
    sys.exit()
print("== self")
for f, c in selfc.most_common(top):
    print(f"{c//n:>8} {100*c/total:5.1f}%  {short(f)}")
