#!/usr/bin/env bash
# test.sh: builds, then runs every test and ends with one line
#   summary: N passed, M failed
# exiting non-zero if anything failed. Parts:
#   build  a failed build counts as 1 failure (later parts still run what was built)
#   lit    tests/lit through llvm-19's lit, one count per test
#   unit   the GoogleTest unit tests through ctest (when built), one count per test
#   fuzz   gradc-fuzz-frontend for FUZZ_SECONDS (default 60) when built, counts as 1
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
  n=$(grep -E "^ *$1: *[0-9]+" "$2" | tail -n 1 | sed -E "s/^ *$1: *([0-9]+).*/\1/")
  echo "${n:-0}"
}

echo "== build"
if ! bash scripts/build.sh; then
  echo "test: BUILD FAILED"
  failed=$((failed + 1))
fi
LOGS=build/test-logs
mkdir -p "$LOGS"

echo "== lit"
if [[ -f build/tests/lit/lit.site.cfg.py ]]; then
  "$PY" "$LIT" -sv build/tests/lit 2>&1 | tee "$LOGS/lit.log"
  lit_status=${PIPESTATUS[0]}
  lit_pass=$(( $(lit_count 'Passed' "$LOGS/lit.log") + $(lit_count 'Passed With Retry' "$LOGS/lit.log") \
             + $(lit_count 'Expectedly Failed' "$LOGS/lit.log") ))
  lit_fail=$(( $(lit_count 'Failed' "$LOGS/lit.log") + $(lit_count 'Unresolved' "$LOGS/lit.log") \
             + $(lit_count 'Timed Out' "$LOGS/lit.log") + $(lit_count 'Unexpectedly Passed' "$LOGS/lit.log") ))
  if [[ $lit_status -ne 0 && $lit_fail -eq 0 ]]; then
    echo "test: lit exited with $lit_status"
    lit_fail=1
  fi
  if [[ $((lit_pass + lit_fail)) -eq 0 ]]; then
    echo "test: lit ran no test"
    lit_fail=1
  fi
  echo "lit: $lit_pass passed, $lit_fail failed"
  passed=$((passed + lit_pass))
  failed=$((failed + lit_fail))
else
  echo "test: build/tests/lit/lit.site.cfg.py missing (configure failed?)"
  failed=$((failed + 1))
fi

echo "== unit tests"
# Only targets whose sources still exist: build/bin may hold stale binaries.
if compgen -G 'tests/unit/*.cpp' >/dev/null && [[ -x build/bin/gradc-unittests ]]; then
  ctest --test-dir build --output-on-failure -j2 2>&1 | tee "$LOGS/ctest.log"
  ctest_status=${PIPESTATUS[0]}
  line=$(grep -E '[0-9]+% tests passed, [0-9]+ tests? failed out of [0-9]+' "$LOGS/ctest.log" | tail -n 1)
  if [[ -n "$line" ]]; then
    ctest_fail=$(sed -E 's/.* ([0-9]+) tests? failed out of ([0-9]+).*/\1/' <<<"$line")
    ctest_total=$(sed -E 's/.* failed out of ([0-9]+).*/\1/' <<<"$line")
    ctest_pass=$((ctest_total - ctest_fail))
  else
    ctest_pass=0
    ctest_fail=0
  fi
  if [[ $ctest_status -ne 0 && $ctest_fail -eq 0 ]]; then
    echo "test: ctest exited with $ctest_status"
    ctest_fail=1
  elif [[ $((ctest_pass + ctest_fail)) -eq 0 ]]; then
    echo "test: ctest found no unit test"
    ctest_fail=1
  fi
  echo "unit: $ctest_pass passed, $ctest_fail failed"
  passed=$((passed + ctest_pass))
  failed=$((failed + ctest_fail))
else
  echo "(no unit tests built)"
fi

echo "== fuzz"
FUZZER=build/bin/gradc-fuzz-frontend
SEEDS=tests/fuzz/corpus/frontend
if [[ -f compiler/fuzz/FuzzFrontend.cpp && -x "$FUZZER" ]]; then
  corpus=$(mktemp -d /tmp/gradc-fuzz-corpus.XXXXXX)
  mkdir -p build/fuzz-artifacts
  if [[ -d "$SEEDS" ]]; then cp -R "$SEEDS"/. "$corpus"/; fi
  # The temp dir is the first (writable) corpus; the checked-in seeds are only read.
  # -close_fd_mask=3 silences the target's own printing; libFuzzer and the sanitizers still
  # report. To reproduce a crash: build/bin/gradc-fuzz-frontend build/fuzz-artifacts/crash-...
  echo "running $FUZZER for ${FUZZ_SECONDS:-60}s (log: $LOGS/fuzz.log)"
  "$FUZZER" -max_total_time="${FUZZ_SECONDS:-60}" -rss_limit_mb=4096 -timeout=10 \
    -close_fd_mask=3 -print_final_stats=1 -artifact_prefix=build/fuzz-artifacts/ \
    "$corpus" "$SEEDS" >"$LOGS/fuzz.log" 2>&1 </dev/null
  fuzz_status=$?
  runs=$(grep -Eo 'Done [0-9]+ runs' "$LOGS/fuzz.log" | tail -n 1 | grep -Eo '[0-9]+')
  [[ -n "$runs" ]] || runs=$(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "$LOGS/fuzz.log" | grep -Eo '[0-9]+$' | tail -n 1)
  if [[ $fuzz_status -eq 0 ]]; then
    echo "fuzz: passed, ${runs:-?} executions, corpus $(find "$corpus" -type f | wc -l) inputs"
    passed=$((passed + 1))
  else
    echo "fuzz: FAILED (exit $fuzz_status) after ${runs:-?} executions; last lines of $LOGS/fuzz.log:"
    tail -n 60 "$LOGS/fuzz.log"
    failed=$((failed + 1))
  fi
  rm -rf "$corpus"
else
  echo "(no fuzz target built)"
fi

echo "summary: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
