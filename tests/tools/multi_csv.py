"""multi_csv.py OUT ROWS SEED [FACTOR]: a CSV "date,temp,load,price" of ROWS rows: three series
with different ranges (a seasonal temperature, a load that follows it, a trending price),
deterministic for SEED; every value times FACTOR (default 1), for data outside the training
range."""
import sys

import numpy as np

out, rows, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
factor = float(sys.argv[4]) if len(sys.argv) > 4 else 1.0
rng = np.random.default_rng(seed)
t = np.arange(rows)
temp = 12 + 9 * np.sin(t * 2 * np.pi / 24) + rng.normal(0, 1, rows)
load = 300 + 25 * np.sin((t - 2) * 2 * np.pi / 24) + rng.normal(0, 4, rows)
price = 40 + 0.3 * t + rng.normal(0, 2, rows)
with open(out, "w") as f:
    f.write("date,temp,load,price\n")
    for i in range(rows):
        f.write(f"{i},{temp[i] * factor:.3f},{load[i] * factor:.2f},{price[i] * factor:.2f}\n")
