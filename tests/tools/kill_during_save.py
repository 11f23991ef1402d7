"""kill_during_save.py EXE DIR ROUNDS EPOCHS: SIGKILLs a training run that writes a resumable
checkpoint after every step (--checkpoint-every 1), ROUNDS times at pseudo-random moments,
restarting it with --resume each time (writes pause 20 ms after their first 8 bytes, through
the runtime's GRADC_TEST_WRITE_PAUSE_MS testing hook, so that many kills land inside one). After every kill the checkpoint must be whole (the
executable loads it, checksum included) and never move backwards; at least one kill must
have landed inside a write (a temporary file left behind). The run finished after the kills
must end with parameters bitwise identical to an uninterrupted run."""
import json
import os
import random
import struct
import subprocess
import sys
import time

exe, work, rounds, epochs = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
os.makedirs(work, exist_ok=True)
ckpt, straight = os.path.join(work, "ckpt.safetensors"), os.path.join(work, "straight.safetensors")
for f in os.listdir(work):
    os.remove(os.path.join(work, f))
common = ["--quiet", "--epochs", epochs]


def step_of(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return int(json.loads(f.read(n))["__metadata__"]["gradc.step"])


ref = subprocess.run([exe, *common, "--save", straight], capture_output=True, text=True)
if ref.returncode != 0:
    sys.exit(f"the straight run failed: {ref.stderr}")
rng = random.Random(8)
last, mid_write, kills = -1, 0, 0
for r in range(rounds):
    args = [exe, *common, "--save", ckpt, "--checkpoint-every", "1"]
    if os.path.exists(ckpt):
        args += ["--resume", ckpt]
    # Each write pauses 20 ms after its first 8 bytes, so that kills land inside writes.
    env = dict(os.environ, GRADC_TEST_WRITE_PAUSE_MS="20")
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    time.sleep(rng.uniform(0.03, 0.25))
    p.kill()
    p.wait()
    if p.returncode == 0:
        break  # finished before the kill
    kills += 1
    if any(f.startswith("ckpt.safetensors.tmp.") for f in os.listdir(work)):
        mid_write += 1
    if not os.path.exists(ckpt):
        continue  # killed before its first checkpoint
    check = subprocess.run([exe, "--quiet", "--epochs", "0", "--resume", ckpt], capture_output=True, text=True)
    if check.returncode != 0:
        sys.exit(f"round {r}: the checkpoint does not load: {check.stderr}")
    step = step_of(ckpt)
    if step < last:
        sys.exit(f"round {r}: the checkpoint went back from step {last} to {step}")
    last = step
print(f"{kills} kills, {mid_write} inside a checkpoint write; every checkpoint loaded whole, steps never went back")
if mid_write == 0:
    sys.exit("no kill landed inside a write: the test did not exercise a torn write")
fin = subprocess.run([exe, *common, "--save", ckpt, "--resume", ckpt], capture_output=True, text=True)
if fin.returncode != 0:
    sys.exit(f"the final resumed run failed: {fin.stderr}")
left = [f for f in os.listdir(work) if ".tmp." in f]
if left:
    sys.exit(f"temporary files of killed writers were not cleaned up: {left}")
print("no temporary files left")
same = subprocess.run([sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "same_bits.py"),
                       straight, ckpt], capture_output=True, text=True)
print(same.stdout.strip() or same.stderr.strip())
sys.exit(same.returncode)
