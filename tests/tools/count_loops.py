"""count_loops.py CPP FUNC ELEMENTS FILE:FROM-TO: counts, in the method FUNC of gradc's
emitted C++ (train, evalLoss, infer), the loop nests over ELEMENTS elements that compute a node
of FILE's lines FROM..TO (as the comment above each nest names them), before the `loss`
node (the forward pass) and after it (the backward pass and the optimizer). Prints
`FUNC: forward N, backward M loops over ELEMENTS elements from FILE:FROM-TO`."""
import re
import sys

path, func, elements, where = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
fname, span = where.rsplit(":", 1)
lo, hi = map(int, span.split("-"))
lines = open(path).read().splitlines()
start = next(i for i, l in enumerate(lines) if re.match(rf"  (double|void) {func}\(", l))
end = next((i for i in range(start + 1, len(lines)) if re.match(r"(  (double|void) |\S|private:)", lines[i])), len(lines))
body = lines[start:end]

loc = re.compile(re.escape(fname) + r":(\d+):\d+")
loop = re.compile(r"\s*for \(int64_t (i\d*) = 0; \1 < (\d+); \+\+\1\)")
counts = [0, 0]
phase = 0
i = 0
while i < len(body):
    line = body[i]
    if re.match(r"\s*// loss\b", line):
        phase = 1
    m = loop.match(line)
    if not m:
        i += 1
        continue
    # One nest: this header and the headers (and GRADC_IVDEP lines) right below it.
    n = int(m.group(2))
    j = i + 1
    while j < len(body) and (loop.match(body[j]) or body[j].strip() == "GRADC_IVDEP"):
        if loop.match(body[j]):
            n *= int(loop.match(body[j]).group(2))
        j += 1
    # The comment block above the nest (skipping buffer set-up lines) names its nodes.
    k = i - 1
    named = []
    while k >= 0 and (body[k].strip().startswith("//") or body[k].strip().startswith("std::fill_n") or body[k].strip() == "GRADC_IVDEP"):
        named += [int(x) for x in loc.findall(body[k])]
        if re.match(r"\s*// fused loop", body[k]) or (body[k].strip().startswith("//") and not body[k].strip().startswith("//  ")):
            break
        k -= 1
    if n == elements and any(lo <= x <= hi for x in named):
        counts[phase] += 1
    i = j
print(f"{func}: forward {counts[0]}, backward {counts[1]} loops over {elements} elements from {where}")
