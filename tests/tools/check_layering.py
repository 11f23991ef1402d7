"""check_layering.py REPO: the compiler's folders are stages, and an include may only run down
them: a file includes headers of its own folder or of a lower stage, never of a stage above
or beside it (docs/architecture.md). The runtime includes no compiler header. Prints each
offending include as FILE:LINE: and exits 1, or prints 'layering ok: N includes'."""
import os
import re
import sys

# Stage ranks: lower numbers sit below higher ones.
RANK = {"support": 0, "ir": 1, "frontend": 1, "elaborate": 2, "autodiff": 2, "transforms": 3,
        "lower": 4, "interp": 5, "codegen": 5, "deploy": 6, "driver": 7, "fuzz": 8}
INCLUDE = re.compile(r'^\s*#\s*include\s+"([a-z]+)/[^"]+"')

repo = sys.argv[1]
bad, count = [], 0
compiler = os.path.join(repo, "compiler")
for stage in sorted(os.listdir(compiler)):
    folder = os.path.join(compiler, stage)
    if not os.path.isdir(folder):
        continue
    if stage not in RANK:
        bad.append(f"compiler/{stage}: a folder with no stage rank (add it to check_layering.py and docs/architecture.md)")
        continue
    for dirpath, _, files in os.walk(folder):
        for f in files:
            if not f.endswith((".cpp", ".h", ".def")):
                continue
            path = os.path.join(dirpath, f)
            for n, line in enumerate(open(path, encoding="utf-8", errors="replace"), 1):
                m = INCLUDE.match(line)
                if not m:
                    continue
                count += 1
                target = m.group(1)
                if target == stage:
                    continue
                if target not in RANK or RANK[target] >= RANK[stage]:
                    bad.append(f"{os.path.relpath(path, repo)}:{n}: {stage} includes {target}/ (not a lower stage)")
for dirpath, _, files in os.walk(os.path.join(repo, "runtime")):
    for f in files:
        path = os.path.join(dirpath, f)
        if not f.endswith((".cpp", ".h")):
            continue
        for n, line in enumerate(open(path, encoding="utf-8", errors="replace"), 1):
            m = INCLUDE.match(line)
            if m and m.group(1) in RANK:
                bad.append(f"{os.path.relpath(path, repo)}:{n}: the runtime includes compiler/{m.group(1)}/")
for b in bad:
    print(b)
if bad:
    sys.exit(1)
print(f"layering ok: {count} includes")
