# -*- Python -*-
# lit configuration for gradc. Run through the generated site config:
#   /usr/bin/python3 /usr/lib/llvm-19/build/utils/lit/lit.py -sv build/tests/lit
#
# Substitutions in RUN lines:
#   %gradc   the built gradc driver        %models  the repository's models/ directory
#   %inputs  tests/lit/Inputs              %python  /usr/bin/python3 (torch, numpy)
#   %repo    the repository root           %build   the CMake build directory
#   %mpirun  mpirun ... -np (tests/lit/mpi: %mpirun 2 %t/exe ...)
# plus lit's own (%s, %S, %t, %T, ...). FileCheck, not and count come from llvm-19.
# RUN lines use lit's internal shell: pipes, &&, ||, redirections, not, env, cd, rm, mkdir.
import os

import lit.formats

config.name = "gradc"
config.test_format = lit.formats.ShTest(execute_external=False)
config.suffixes = [".model", ".test"]
config.excludes = ["Inputs", "lit.cfg.py", "lit.site.cfg.py.in"]
config.test_source_root = os.path.dirname(os.path.abspath(__file__))

# Without a site config (lit run on the source directory), assume the default build/.
repo_root = getattr(config, "gradc_src_root", None) or os.path.abspath(
    os.path.join(config.test_source_root, "..", ".."))
obj_root = getattr(config, "gradc_obj_root", None) or os.path.join(repo_root, "build")
tools_dir = getattr(config, "gradc_tools_dir", None) or os.path.join(obj_root, "bin")
llvm_tools_dir = getattr(config, "llvm_tools_dir", None) or "/usr/lib/llvm-19/bin"
python = getattr(config, "python_executable", None) or "/usr/bin/python3"

config.test_exec_root = os.path.join(obj_root, "tests", "lit")

gradc = os.path.join(tools_dir, "gradc")
if not os.path.exists(gradc):
    lit_config.warning("gradc not built: %s does not exist" % gradc)

config.substitutions.append(("%gradc", gradc))
config.substitutions.append(("%models", os.path.join(repo_root, "models")))
config.substitutions.append(("%inputs", os.path.join(config.test_source_root, "Inputs")))
config.substitutions.append(("%python", python))
config.substitutions.append(("%repo", repo_root))
config.substitutions.append(("%build", obj_root))

# FileCheck, not, count first, then our own tools, then the caller's PATH.
config.environment["PATH"] = os.pathsep.join(
    [llvm_tools_dir, tools_dir, config.environment.get("PATH", os.environ.get("PATH", ""))])
# lit passes only a few variables through; keep the ones numpy/torch/OpenBLAS need here.
for var in ["HOME", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OMP_NUM_THREADS",
            "OPENBLAS_NUM_THREADS", "TMPDIR", "ASAN_OPTIONS", "UBSAN_OPTIONS", "GRADC_BACKEND", "LSAN_OPTIONS",
            "ASAN_SYMBOLIZER_PATH", "GRADC_EXTRA_CXXFLAGS"]:
    if var in os.environ:
        config.environment[var] = os.environ[var]

if os.path.exists(os.path.join(tools_dir, "gradc-fuzz-frontend")):
    config.available_features.add("fuzzer")

# bench/onednn_lstm is built only where oneDNN (libdnnl-dev) was found (tests/lit/bench).
if os.path.exists(os.path.join(tools_dir, "onednn_lstm")):
    config.available_features.add("onednn")

# Recorded checkpoint digests exist for this CPU's vector ISA (codegen/checkpoints_bitwise.test).
_isa = "avx2"
try:
    with open("/proc/cpuinfo") as _f:
        _cpuinfo = _f.read()
        if "avx512f" in _cpuinfo:
            _isa = "avx512"
        # The runtime is built for this CPU (-march=native): it has the bf16 kernels
        # (runtime/GemmBf16.cpp) exactly where the CPU has AVX512-BF16 (train/bf16_*.test).
        if "avx512_bf16" in _cpuinfo:
            config.available_features.add("bf16")
except OSError:
    pass
if os.path.exists(os.path.join(config.test_source_root, "Inputs", "checkpoint_digests", _isa + ".txt")):
    config.available_features.add("checkpoint-digests")

# Deployment (tests/lit/deploy): python3-onnx reads what --emit=onnx writes; ONNX Runtime is
# onnxruntime-node, installed into BUILD/node by scripts/install-deps.sh (npm install --ignore-scripts).
import shutil
import subprocess
if subprocess.call([python, "-c", "import onnx"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) == 0:
    config.available_features.add("python-onnx")
_node_modules = os.path.join(obj_root, "node", "node_modules")
if shutil.which("node") and os.path.isdir(os.path.join(_node_modules, "onnxruntime-node")):
    config.available_features.add("onnxruntime")
    config.environment["GRADC_NODE_MODULES"] = _node_modules
else:
    lit_config.note("ONNX Runtime tests skipped: no node or no %s/onnxruntime-node "
                    "(scripts/install-deps.sh installs it with npm)" % _node_modules)

# Open MPI's mpirun (openmpi-bin): the data-parallel tests (tests/lit/mpi). %mpirun N ./EXE
# starts N ranks on this machine, as root too, more ranks than cores allowed, unbound.
if shutil.which("mpirun", path=config.environment["PATH"]):
    config.available_features.add("mpi")
config.substitutions.append(("%mpirun", "mpirun --allow-run-as-root --oversubscribe --bind-to none -np"))

# strace can trace a child here (robust/resume_reads_once.test counts the opens of a file).
try:
    import subprocess
    if subprocess.call(["strace", "-o", os.devnull, "true"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL) == 0:
        config.available_features.add("strace")
except OSError:
    pass
