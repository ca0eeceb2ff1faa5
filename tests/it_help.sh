#!/usr/bin/env bash
# Every command and subcommand of the binary answers --help (and -h) on stdout with exit 0 and a
# usage line that names that command, not its parent's: a subcommand's help must not be
# swallowed by the dispatcher above it. Then the unknown-name cases: a clear message, exit 2.
# TAP lines, then "N passed, N failed".
set -u
cd "$(dirname "$0")/.."
BIN=${LIPSYNC_BIN:-build/lipsync}
n=0 pass=0 fail=0
ok() { n=$((n + 1)); pass=$((pass + 1)); echo "ok $n - $1"; }
bad() { n=$((n + 1)); fail=$((fail + 1)); echo "not ok $n - $1"; [[ -n "${2:-}" ]] && sed 's/^/#   /' <<<"$2"; }
finish() { echo "1..$n"; echo "$pass passed, $fail failed"; [[ $fail -eq 0 ]]; exit; }

if [[ ! -x "$BIN" ]]; then bad "binary $BIN exists"; finish; fi

# command words -> the text its usage line must start with
cases=(
    "serve|usage: lipsync serve"
    "render|usage: lipsync render"
    "client|usage: lipsync client"
    "client stream|usage: lipsync client stream"
    "audio|usage: lipsync audio"
    "avatar|usage: lipsync avatar"
    "model|usage: lipsync model"
    "version|usage: lipsync version"
    "bench|usage: lipsync bench"
    "bench model|usage: lipsync bench model"
    "bench audio|usage: lipsync bench audio"
    "bench pipeline|usage: lipsync bench pipeline"
    "bench serve|usage: lipsync bench serve"
    "bench encode|usage: lipsync bench encode"
    "bench image|usage: lipsync bench image"
    "bench registry|usage: lipsync bench registry"
    "bench separated|usage: lipsync bench separated"
    "bench stream|usage: lipsync bench stream"
)
for c in "${cases[@]}"; do
    words=${c%%|*}
    want=${c#*|}
    for flag in --help -h; do
        # shellcheck disable=SC2086
        out=$(timeout 30 "$BIN" $words $flag 2>/dev/null)
        rc=$?
        first=$(grep -m1 '^usage:' <<<"$out")
        if [[ $rc -eq 0 && "$first" == "$want"* ]]; then
            ok "lipsync $words $flag: exit 0, '$want'"
        else
            bad "lipsync $words $flag" "rc=$rc first usage line: $first"
        fi
    done
done

out=$("$BIN" --help 2>&1)
if [[ $? -eq 0 && "$out" == *"serve"* && "$out" == *"bench"* ]]; then ok "lipsync --help lists the commands"; else bad "lipsync --help" "$out"; fi
out=$("$BIN" nosuchcommand 2>&1)
rc=$?
if [[ $rc -eq 2 && "$out" == *"nosuchcommand"* ]]; then ok "unknown command: exit 2 naming it"; else bad "unknown command" "rc=$rc $out"; fi
out=$("$BIN" bench nosuchbench 2>&1)
rc=$?
if [[ $rc -eq 2 && "$out" == *"nosuchbench"* ]]; then ok "unknown benchmark: exit 2 naming it"; else bad "unknown benchmark" "rc=$rc $out"; fi
finish
