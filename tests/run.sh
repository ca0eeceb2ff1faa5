#!/usr/bin/env bash
# Runs every test: the C test programs (build/tests/test_*), then the Python/integration tests
# (tests/py/test_*.py, tests/*.sh). Each program prints its own TAP lines and summary; this
# runner adds them up and ends with one line "N passed, N failed" that CI reads.
# TESTS_ONLY=unit runs only the C programs. TEST_FILTER=regex narrows by name.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
export MODELS=${MODELS:-models} AVATARS=${AVATARS:-avatars} BUILD
export SHARED_DIR=${SHARED_DIR:-$(cd .. && pwd)/shared}
export LIPSYNC_BIN=${LIPSYNC_BIN:-$BUILD/lipsync}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$(pwd)/tests/lsan.supp:print_suppressions=0}
filter=${TEST_FILTER:-.}
passed=0 failed=0 skipped=0
failed_names=()
logdir=$BUILD/test-logs
mkdir -p "$logdir"
t0=$(date +%s)

tally() { # name logfile rc
    local name=$1 log=$2 rc=$3 line p f s
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -1)
    if [[ -n "$line" ]]; then
        p=$(sed -E 's/^([0-9]+) passed.*/\1/' <<<"$line")
        f=$(sed -E 's/^[0-9]+ passed, ([0-9]+) failed.*/\1/' <<<"$line")
        s=$(grep -oE '[0-9]+ skipped' <<<"$line" | grep -oE '[0-9]+' || echo 0)
    else
        p=0 f=1 s=0
    fi
    if [[ $rc -ne 0 && $f -eq 0 ]]; then f=1; fi # crashed or failed without saying so
    passed=$((passed + p)) failed=$((failed + f)) skipped=$((skipped + ${s:-0}))
    if [[ $f -ne 0 ]]; then
        failed_names+=("$name")
        echo "FAIL $name (rc=$rc) -- log: $log"
        grep -E '^(not ok|#)' "$log" | head -40 | sed 's/^/    /'
        tail -5 "$log" | sed 's/^/    | /'
    else
        echo "ok   $name: $p passed${s:+, $s skipped}"
    fi
}

for t in "$BUILD"/tests/test_*; do
    [[ -x "$t" ]] || continue
    name=$(basename "$t")
    [[ "$name" =~ $filter ]] || continue
    log="$logdir/$name.log"
    timeout 600 "$t" >"$log" 2>&1
    tally "$name" "$log" $?
done

if [[ "${TESTS_ONLY:-}" != unit ]]; then
    for t in tests/py/test_*.py; do
        [[ -f "$t" ]] || continue
        name=$(basename "$t" .py)
        [[ "$name" =~ $filter ]] || continue
        log="$logdir/$name.log"
        timeout 900 /usr/bin/python3 "$t" >"$log" 2>&1
        tally "$name" "$log" $?
    done
    for t in tests/it_*.sh; do
        [[ -f "$t" ]] || continue
        name=$(basename "$t" .sh)
        [[ "$name" =~ $filter ]] || continue
        log="$logdir/$name.log"
        timeout 900 bash "$t" >"$log" 2>&1
        tally "$name" "$log" $?
    done
fi

echo "test time: $(( $(date +%s) - t0 )) s"
if ((${#failed_names[@]})); then echo "failed: ${failed_names[*]}"; fi
echo "$passed passed, $failed failed, $skipped skipped"
[[ $failed -eq 0 ]]
