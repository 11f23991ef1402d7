"""mpi_killed_rank.py EXE [FLAGS...]: trains EXE under `mpirun -np 2` and SIGKILLs rank 1
(the process itself, found by its OMPI_COMM_WORLD_RANK) once both ranks have started
training; prints mpirun's exit code, whether the job ended within 60 s of the kill (no
hang) and mpirun's standard error. Exits 1 if the job is still running after 60 s."""
import os
import subprocess
import sys
import time

exe, flags = sys.argv[1], sys.argv[2:]
# Each rank writes its pid to a file, then becomes the executable (same pid).
work = os.path.dirname(os.path.abspath(exe))
script = f'echo $$ > {work}/pid.$OMPI_COMM_WORLD_RANK; exec "$0" "$@"'
cmd = ["mpirun", "--allow-run-as-root", "--oversubscribe", "--bind-to", "none", "-np", "2",
       "sh", "-c", script, exe] + flags
for r in (0, 1):
    if os.path.exists(f"{work}/pid.{r}"):
        os.remove(f"{work}/pid.{r}")
p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
deadline = time.time() + 60
while not os.path.exists(f"{work}/pid.1") and time.time() < deadline:
    time.sleep(0.05)
time.sleep(1.0)  # both ranks are in their training loops (reading data, stepping)
pid = int(open(f"{work}/pid.1").read())
os.kill(pid, 9)
killed = time.time()
try:
    _, err = p.communicate(timeout=60)
except subprocess.TimeoutExpired:
    p.kill()
    print("the job still runs 60 s after rank 1 was killed: it hangs")
    sys.exit(1)
print("exit", p.returncode)
print("ended within 60 s of the kill:", "yes" if time.time() - killed < 60 else "no")
sys.stdout.write(err)
