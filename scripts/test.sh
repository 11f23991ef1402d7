#!/usr/bin/env bash
# test.sh: builds, then runs every test and ends with one line
#   summary: N passed, M failed
# exiting non-zero if anything failed. Parts:
#   build  a failed build counts as 1 failure (later parts still run what was built)
#   lit    tests/lit through llvm-19's lit, one count per test
#   unit   the GoogleTest unit tests through ctest (when built), one count per test
#   asan   build-asan (-DGRADC_SANITIZE=ON): lit (minus the slowest) and unit tests under
#          ASan + UBSan; each sanitizer report counts as 1 failure (GRADC_SANITIZE_TESTS=0: off)
#   fuzz   each libFuzzer target of build-asan (front end, safetensors, CSV, IDX, multi-column
#          windows, text) for FUZZ_SECONDS (default 20), 1 count each (off with the sanitizers)
# Logs go to build/test-logs/.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1

passed=0
failed=0
LIT=/usr/lib/llvm-19/build/utils/lit/lit.py
PY=/usr/bin/python3

# count <regex> <file>: the number after "<regex>:" in lit's summary, 0 when absent.
lit_count() {
  local n
  # (lit pads the names when the summary has an "Excluded" line: "  Passed  : 93".)
  n=$(grep -E "^ *$1 *: *[0-9]+" "$2" | tail -n 1 | sed -E "s/^ *$1 *: *([0-9]+).*/\1/")
  echo "${n:-0}"
}

echo "== build"
if ! bash scripts/build.sh; then
  echo "test: BUILD FAILED"
  failed=$((failed + 1))
fi
LOGS=build/test-logs
mkdir -p "$LOGS"

# run_lit BUILD LABEL [LIT ARGS...]: the lit tests of BUILD, counted.
run_lit() {
  local dir=$1 label=$2
  shift 2
  local log="$LOGS/$label.log"
  if [[ ! -f $dir/tests/lit/lit.site.cfg.py ]]; then
    echo "test: $dir/tests/lit/lit.site.cfg.py missing (configure failed?)"
    failed=$((failed + 1))
    return
  fi
  "$PY" "$LIT" -sv --time-tests "$@" "$dir/tests/lit" 2>&1 | tee "$log"
  local status=${PIPESTATUS[0]}
  local p=$(( $(lit_count 'Passed' "$log") + $(lit_count 'Passed With Retry' "$log") \
             + $(lit_count 'Expectedly Failed' "$log") ))
  local f=$(( $(lit_count 'Failed' "$log") + $(lit_count 'Unresolved' "$log") \
             + $(lit_count 'Timed Out' "$log") + $(lit_count 'Unexpectedly Passed' "$log") ))
  if [[ $status -ne 0 && $f -eq 0 ]]; then
    echo "test: lit exited with $status"
    f=1
  fi
  if [[ $((p + f)) -eq 0 ]]; then
    echo "test: lit ran no test"
    f=1
  fi
  echo "$label: $p passed, $f failed"
  passed=$((passed + p))
  failed=$((failed + f))
}

# run_ctest BUILD LABEL: the GoogleTest unit tests of BUILD through ctest, counted.
run_ctest() {
  local dir=$1 label=$2
  local log="$LOGS/$label.log"
  # Only targets whose sources still exist: bin/ may hold stale binaries.
  if ! compgen -G 'tests/unit/*.cpp' >/dev/null || [[ ! -x $dir/bin/gradc-unittests ]]; then
    echo "(no unit tests built in $dir)"
    return
  fi
  ctest --test-dir "$dir" --output-on-failure -j2 2>&1 | tee "$log"
  local status=${PIPESTATUS[0]} p=0 f=0
  local line
  line=$(grep -E '[0-9]+% tests passed, [0-9]+ tests? failed out of [0-9]+' "$log" | tail -n 1)
  if [[ -n "$line" ]]; then
    f=$(sed -E 's/.* ([0-9]+) tests? failed out of ([0-9]+).*/\1/' <<<"$line")
    p=$(( $(sed -E 's/.* failed out of ([0-9]+).*/\1/' <<<"$line") - f ))
  fi
  if [[ $status -ne 0 && $f -eq 0 ]]; then
    echo "test: ctest exited with $status"
    f=1
  elif [[ $((p + f)) -eq 0 ]]; then
    echo "test: ctest found no unit test"
    f=1
  fi
  echo "$label: $p passed, $f failed"
  passed=$((passed + p))
  failed=$((failed + f))
}

echo "== lit"
run_lit build lit

echo "== unit tests"
run_ctest build unit

echo "== sanitizers"
# build-asan: the compiler, the runtime, the unit tests and every executable its gradc
# generates (with the C++ backend, GRADC_BACKEND=cpp) under AddressSanitizer + UBSan
# (-DGRADC_SANITIZE=ON), running the lit tests
# (but the slowest, listed in ASAN_SKIP, which train for long or compare many models with
# PyTorch, or train with both backends and the interpreter (llvm/parity_*): the plain build
# runs them, and robust/all_layers_run runs every prelude layer's code here; the deploy tests whose C programs link the
# uninstrumented library of --emit=lib, or that run ONNX Runtime; and the MPI tests, whose
# Open MPI LeakSanitizer would report) and the unit tests. Every sanitizer report is written
# to build-asan/sanitizer-logs/ and counts as one failure, even in a test that expected
# its command to fail. GRADC_SANITIZE_TESTS=0 skips this part.
ASAN_SKIP='mpi/|robust/resume_reads_once|torch/schedule_vs_torch|bench/onednn_check|codegen/checkpoints_bitwise|torch/exe_vs_torch|torch/layers_vs_torch|torch/dropout_vs_torch|torch/bidirectional_vs_torch|torch/gru_vs_torch|torch/groupnorm_vs_torch|torch/conv1d_vs_torch|torch/bnlstm_vs_torch|torch/embedding_vs_torch|llvm/parity_|codegen/fashion_accuracy|codegen/bilstm_fashion_trains|codegen/bnlstm_fashion_trains|codegen/models_gradcheck|codegen/exe_matches_interpreter|fusion/on_off_agree|robust/kill_during_save|robust/resume_signal|deploy/onnxruntime_models|deploy/lib_c_program|deploy/lib_fashion'
if [[ "${GRADC_SANITIZE_TESTS:-1}" != 0 ]]; then
  if [[ ! -f build-asan/build.ninja && ! -f build-asan/Makefile ]]; then
    generator=()
    if command -v ninja >/dev/null 2>&1; then generator=(-G Ninja); fi
    cmake -S . -B build-asan "${generator[@]}" -DGRADC_SANITIZE=ON -DGRADC_DEBUG_VERIFY=ON >"$LOGS/asan-configure.log" 2>&1
  fi
  echo "building build-asan (log: $LOGS/asan-build.log)"
  if cmake --build build-asan -j2 >"$LOGS/asan-build.log" 2>&1; then
    SANLOGS=$(pwd)/build-asan/sanitizer-logs
    rm -rf "$SANLOGS"
    mkdir -p "$SANLOGS"
    export ASAN_OPTIONS="halt_on_error=1:detect_leaks=1:log_path=$SANLOGS/asan"
    export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:log_path=$SANLOGS/ubsan"
    # The C++ backend: its generated code is compiled with the sanitizers (the LLVM
    # backend's objects are not instrumented).
    GRADC_BACKEND=cpp run_lit build-asan asan-lit --filter-out "$ASAN_SKIP"
    run_ctest build-asan asan-unit
    reports=$(find "$SANLOGS" -type f | wc -l)
    if [[ $reports -gt 0 ]]; then
      echo "sanitizers: $reports report(s):"
      for r in "$SANLOGS"/*; do echo "--- $r"; head -n 40 "$r"; done
      failed=$((failed + reports))
    else
      echo "sanitizers: no report"
    fi
    unset ASAN_OPTIONS UBSAN_OPTIONS
  else
    echo "test: build-asan FAILED; last lines of $LOGS/asan-build.log:"
    tail -n 40 "$LOGS/asan-build.log"
    failed=$((failed + 1))
  fi
fi

echo "== fuzz"
# Every libFuzzer target of build-asan (built there, with the libraries the sanitized tests use:
# ASan + UBSan + coverage) (the model front end and the runtime's readers) for FUZZ_SECONDS
# each (default 20), from its checked-in corpus tests/fuzz/corpus/<target>; one count each.
# The temp dir is the first (writable) corpus; the checked-in seeds are only read.
# -close_fd_mask=3 silences the target's own printing; libFuzzer and the sanitizers still
# report. To reproduce a crash: build-asan/bin/<fuzzer> build/fuzz-artifacts/<target>/crash-...
fuzz_ran=0
for target in frontend safetensors csv idx windows text; do
  case $target in
    frontend) FUZZER=build-asan/bin/gradc-fuzz-frontend; SRC=compiler/fuzz/FuzzFrontend.cpp ;;
    safetensors) FUZZER=build-asan/bin/gradcrt-fuzz-safetensors; SRC=runtime/fuzz/FuzzSafetensors.cpp ;;
    csv) FUZZER=build-asan/bin/gradcrt-fuzz-csv; SRC=runtime/fuzz/FuzzCsv.cpp ;;
    idx) FUZZER=build-asan/bin/gradcrt-fuzz-idx; SRC=runtime/fuzz/FuzzIdx.cpp ;;
    windows) FUZZER=build-asan/bin/gradcrt-fuzz-windows; SRC=runtime/fuzz/FuzzWindows.cpp ;;
    text) FUZZER=build-asan/bin/gradcrt-fuzz-text; SRC=runtime/fuzz/FuzzText.cpp ;;
  esac
  SEEDS=tests/fuzz/corpus/$target
  [[ -f "$SRC" && -x "$FUZZER" ]] || continue
  fuzz_ran=$((fuzz_ran + 1))
  corpus=$(mktemp -d /tmp/gradc-fuzz-corpus.XXXXXX)
  mkdir -p "build/fuzz-artifacts/$target"
  log="$LOGS/fuzz-$target.log"
  echo "running $FUZZER for ${FUZZ_SECONDS:-20}s (log: $log)"
  "$FUZZER" -max_total_time="${FUZZ_SECONDS:-20}" -rss_limit_mb=4096 -timeout=10 \
    -close_fd_mask=3 -print_final_stats=1 -artifact_prefix="build/fuzz-artifacts/$target/" \
    "$corpus" "$SEEDS" >"$log" 2>&1 </dev/null
  fuzz_status=$?
  runs=$(grep -Eo 'Done [0-9]+ runs' "$log" | tail -n 1 | grep -Eo '[0-9]+')
  [[ -n "$runs" ]] || runs=$(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -Eo '[0-9]+$' | tail -n 1)
  if [[ $fuzz_status -eq 0 ]]; then
    echo "fuzz $target: passed, ${runs:-?} executions, corpus $(find "$corpus" -type f | wc -l) new inputs"
    passed=$((passed + 1))
  else
    echo "fuzz $target: FAILED (exit $fuzz_status) after ${runs:-?} executions; last lines of $log:"
    tail -n 60 "$log"
    failed=$((failed + 1))
  fi
  rm -rf "$corpus"
done
[[ $fuzz_ran -gt 0 ]] || echo "(no fuzz target built: they are built in build-asan)"

echo "summary: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
