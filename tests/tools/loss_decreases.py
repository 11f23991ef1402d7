"""loss_decreases.py LOG: the `epoch E loss L ... bpc P` lines of a text model's run: each bpc is loss / ln 2 (to 1e-5), and the last epoch's loss is below the first's.

Prints 'loss goes down: FIRST -> LAST over N epochs' or the failure, exiting 1."""
import math
import re
import sys

rows = [(float(m.group(1)), float(m.group(2))) for m in
        re.finditer(r"^epoch \d+ loss (\S+).* bpc (\S+)", open(sys.argv[1]).read(), re.M)]
if len(rows) < 2:
    sys.exit(f"need at least 2 epoch lines with bpc, got {len(rows)}")
for loss, bpc in rows:
    if abs(bpc - loss / math.log(2)) > 1e-5 * max(bpc, 1):
        sys.exit(f"bpc {bpc} is not loss {loss} / ln 2")
if not rows[-1][0] < rows[0][0]:
    sys.exit(f"loss does not go down: {rows[0][0]} -> {rows[-1][0]}")
print(f"loss goes down: {rows[0][0]} -> {rows[-1][0]} over {len(rows)} epochs")
