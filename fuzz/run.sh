#!/usr/bin/env bash
# fuzz/run.sh TARGET...: runs each built harness build/fuzz/fuzz_<target> for FUZZ_SECONDS
# (default 60; 0 = build only, nothing run) under nice, from the seed corpus
# fuzz/corpus/<target>/ (read-only) plus build/fuzz/corpus/<target>/ (new inputs), writing crash
# reproducers to fuzz/crashes/<target>/. Prints one summary line per target and exits non-zero if
# any target found a crash. Called by `make fuzz`.
# FUZZ_KEEP_GOING=1 runs libFuzzer in fork mode and ignores crashes, OOMs and timeouts, so a
# known, not yet fixed finding does not end a target's campaign (every finding is still written).
set -u
cd "$(dirname "$0")/.."
FUZZ_DIR=${FUZZ_DIR:-build/fuzz}
secs=${FUZZ_SECONDS:-60}
[[ "$secs" == 0 ]] && { echo "fuzz: built $*; FUZZ_SECONDS=0, not run"; exit 0; }
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
status=0
summary=()
for t in "$@"; do
    bin=$FUZZ_DIR/fuzz_$t
    seeds=fuzz/corpus/$t
    work=$FUZZ_DIR/corpus/$t
    crashes=fuzz/crashes/$t
    mkdir -p "$work" "$crashes" "$seeds"
    log=$FUZZ_DIR/fuzz_$t.log
    dict=()
    mode=()
    [[ "${FUZZ_KEEP_GOING:-0}" == 1 ]] && mode=(-fork=1 -ignore_crashes=1 -ignore_ooms=1 -ignore_timeouts=1)
    [[ -f fuzz/$t.dict ]] && dict=(-dict=fuzz/$t.dict)
    echo "fuzz: $t for ${secs}s (log $log)"
    # -rss_limit_mb/-malloc_limit_mb: a decoder asked for a huge image must refuse it itself;
    # an allocation past 2 GiB is reported as a finding. -timeout: one input may take 10 s.
    nice -n 10 "$bin" -max_total_time="$secs" -rss_limit_mb=2560 -malloc_limit_mb=2048 \
        -timeout=10 -print_final_stats=1 -artifact_prefix="$crashes/" "${dict[@]}" "${mode[@]}" \
        "$work" "$seeds" >"$log" 2>&1
    rc=$?
    # Final stats in normal mode; in fork mode the last "#N:" status line.
    execs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' ||
            grep -oE '^#[0-9]+' "$log" | tail -1 | tr -d '#')
    cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | grep -oE '[0-9]+' || echo ?)
    corp=$(ls "$work" | wc -l)
    ncrash=$(ls "$crashes" | grep -cE '^(crash|leak|timeout|oom|slow-unit)-' || true)
    if [[ "${FUZZ_KEEP_GOING:-0}" == 1 ]]; then # fork mode exits 0; its last status counts
        last=$(grep -oE 'oom/timeout/crash: [0-9]+/[0-9]+/[0-9]+' "$log" | tail -1 | cut -d' ' -f2)
        [[ -n "$last" && "$last" != 0/0/0 ]] && rc=1
    fi
    line="$t: rc=$rc execs=$execs cov=$cov corpus=$corp findings_in_dir=$ncrash"
    summary+=("$line")
    if [[ $rc -ne 0 ]]; then
        status=1
        echo "FINDING in $t:"
        grep -E 'ERROR|SUMMARY|runtime error|Test unit written|abort' "$log" | head -10 | sed 's/^/    /'
    fi
done
echo "---- fuzz summary (${secs}s each) ----"
printf '%s\n' "${summary[@]}"
exit $status
