"""interrupt_resume.py EXE DIR SIGNAL EPOCHS [LAUNCHER...]: a real signal (INT or TERM) sent to a
training run that has printed its first epoch line must end it with exit code 128 + the signal
and a resumable checkpoint; --resume then finishes the run, and its parameters and loss lines
equal those of the same run left alone (bitwise). With a LAUNCHER (e.g. mpirun ... -np 2) every
run is started through it and the signal goes to the launcher, as Ctrl-C under mpirun would;
mpirun forwards it to the ranks and itself exits non-zero (1), so any non-zero exit is expected.
Prints what it checked; exits 1 otherwise."""
import os
import signal
import subprocess
import sys
import time

exe, work, sig_name, epochs = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
launcher = sys.argv[5:]
sig = {"INT": signal.SIGINT, "TERM": signal.SIGTERM}[sig_name]
os.makedirs(work, exist_ok=True)
straight, ckpt = os.path.join(work, "straight.safetensors"), os.path.join(work, "interrupted.safetensors")
for f in (straight, ckpt):
    if os.path.exists(f):
        os.remove(f)
common = ["--quiet", "--epochs", epochs]

ref = subprocess.run([*launcher, exe, *common, "--save", straight], capture_output=True, text=True)
if ref.returncode != 0:
    sys.exit(f"the straight run failed ({ref.returncode}): {ref.stderr}")

# Checkpoints every step slow the run down (a sync to disk per step), so that the signal
# lands in the middle of an epoch.
p = subprocess.Popen([*launcher, exe, *common, "--save", ckpt, "--checkpoint-every", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
first = b""
while not first.endswith(b"\n"):  # the first epoch line, unbuffered: training is under way
    c = os.read(p.stdout.fileno(), 1)
    if not c:
        break
    first += c
time.sleep(0.1)
p.send_signal(sig)
rest, err = p.communicate()
first, rest, err = first.decode(), rest.decode(), err.decode()
if launcher and p.returncode == 0 or not launcher and p.returncode != 128 + sig:
    sys.exit(f"the interrupted run exited with {p.returncode}, not {'non-zero' if launcher else 128 + sig}: {err}")
print(f"exit code {p.returncode} after SIG{sig_name}" + (" to the launcher" if launcher else ""))
print(err.strip().splitlines()[0])
resumed = subprocess.run([*launcher, exe, *common, "--resume", ckpt, "--save", ckpt], capture_output=True, text=True)
if resumed.returncode != 0:
    sys.exit(f"the resumed run failed ({resumed.returncode}): {resumed.stderr}")
lines = (first + rest + resumed.stdout).splitlines()
if lines != ref.stdout.splitlines():
    sys.exit("the loss lines differ from the straight run's:\n" + "\n".join(lines[:5]))
print(f"{len(lines)} output lines equal the straight run's")
same = subprocess.run([sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "same_bits.py"),
                       straight, ckpt], capture_output=True, text=True)
print(same.stdout.strip() or same.stderr.strip())
sys.exit(same.returncode)
