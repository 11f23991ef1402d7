"""onnx_vs_predict.py GRADC MODEL WORKDIR [N] [--dynamic-batch]: the ONNX Runtime check of one model: compiles
MODEL to an executable, trains it for 3 batches of one epoch (so BatchNorm's running
statistics are no longer their initial values), exports it with --emit=onnx --weights,
checks it with onnx.checker (full_check), runs the executable's --predict and ONNX Runtime
(run_onnx.js, onnxruntime-node) on the same N random samples (default 70: two full batches
and a padded one for B = 32) and compares the outputs with compare_checkpoints.py at 1e-5
(relative to the largest |output|). With --dynamic-batch the model is exported with
--onnx-dynamic-batch and ONNX Runtime runs all N samples in one session.run of batch N.
Prints each step's result; exits 1 at the first failure."""
import os
import subprocess
import sys

here = os.path.dirname(os.path.abspath(__file__))
args = [a for a in sys.argv[1:] if a != "--dynamic-batch"]
dynamic = len(args) != len(sys.argv) - 1
gradc, model, work = args[0], args[1], args[2]
n = args[3] if len(args) > 3 else "70"
name = os.path.splitext(os.path.basename(model))[0] + (f".dyn{n}" if dynamic else "")
os.makedirs(work, exist_ok=True)
p = lambda ext: os.path.join(work, name + ext)  # noqa: E731
python = sys.executable


def run(*cmd, cwd=None, show=True, env=None):
    r = subprocess.run(list(cmd), cwd=cwd, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        sys.exit(f"{name}: failed ({r.returncode}): {' '.join(cmd)}\n{r.stdout}{r.stderr}")
    if show and r.stdout.strip():
        print(r.stdout.strip())
    return r.stdout


run(gradc, model, "-o", p(".exe"))
# The models' data paths are relative to models/.
run(p(".exe"), "--quiet", "--epochs", "1", "--batch-limit", "3", "--save", p(".ckpt.safetensors"),
    cwd=os.path.dirname(os.path.abspath(model)), show=False)
run(gradc, model, "--emit=onnx", "--weights", p(".ckpt.safetensors"), "-o", p(".onnx"),
    *(["--onnx-dynamic-batch"] if dynamic else []))
out = run(python, os.path.join(here, "check_onnx.py"), p(".onnx"), show=False)
print("\n".join(line for line in out.splitlines() if not line.startswith("initializer")))
run(python, os.path.join(here, "make_inputs.py"), p(".onnx"), n, p(".in.safetensors"))
run(p(".exe"), "--load", p(".ckpt.safetensors"), "--predict", "--data", p(".in.safetensors"), "--out", p(".pred.safetensors"))
env = dict(os.environ, GRADC_ONNX_BATCH=n) if dynamic else None
run("node", os.path.join(here, "run_onnx.js"), p(".onnx"), p(".in.safetensors"), p(".ort.safetensors"), env=env)
run(python, os.path.join(here, "..", "tools", "compare_checkpoints.py"), p(".ort.safetensors"), p(".pred.safetensors"), "1e-5")
