#!/usr/bin/env bash
# Integration test of `lipsync serve` as an operator runs it: config file + flag overrides,
# --print-config, a bad config value, the C client against a real server on loopback, the
# Prometheus endpoint (scraped with a real HTTP client) reflecting the work done, readiness, and
# a clean SIGTERM shutdown. TAP lines, then "N passed, N failed".
set -u
cd "$(dirname "$0")/.."
BIN=${LIPSYNC_BIN:-build/lipsync}
MODELS=${MODELS:-models}
AVATARS=${AVATARS:-avatars}
T=$(mktemp -d /tmp/lipsync-it-serve.XXXXXX)
SRV=""
cleanup() { [[ -n "$SRV" ]] && kill -9 "$SRV" 2>/dev/null; rm -rf "$T"; }
trap cleanup EXIT
n=0 pass=0 fail=0
ok() { n=$((n + 1)); pass=$((pass + 1)); echo "ok $n - $1"; }
bad() { n=$((n + 1)); fail=$((fail + 1)); echo "not ok $n - $1"; [[ -n "${2:-}" ]] && sed 's/^/#   /' <<<"$2"; }
freeport() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
get() { /usr/bin/python3 - "$1" <<'EOF'
import sys, urllib.request, urllib.error
try:
    r = urllib.request.urlopen(sys.argv[1], timeout=5)
    print(r.status); sys.stdout.write(r.read().decode())
except urllib.error.HTTPError as e:
    print(e.code)
except Exception as e:
    print("ERR", e)
EOF
}

# A small avatar (tiny UNet) so the test is fast.
/usr/bin/python3 tools/gen_avatar.py --out "$T/root/mini" --unet "$MODELS/unet_tiny.onnx" --frames 12 >/dev/null 2>&1
PORT=$(freeport)
MPORT=$(freeport)
cat >"$T/lipsync.yaml" <<EOF
server:
  port: 1
  host: 127.0.0.1
models_root: $T/root
default_model: mini
audio:
  encoder_path: $MODELS/audio_encoder_tiny.onnx
output:
  jpeg_quality: 80
EOF

# 1. --print-config: the file's values, with the flag override winning.
cfg=$("$BIN" serve --config "$T/lipsync.yaml" --server.port "$PORT" --print-config 2>&1)
if grep -q "port: $PORT" <<<"$cfg" && grep -q "jpeg_quality: 80" <<<"$cfg"; then ok "--print-config shows file values and flag overrides"; else bad "--print-config" "$cfg"; fi

# 2. A bad value names file, line and key; exit non-zero.
printf 'output:\n  jpeg_quality: 500\n' >"$T/bad.yaml"
msg=$("$BIN" serve --config "$T/bad.yaml" --print-config 2>&1)
rc=$?
if [[ $rc -ne 0 && "$msg" == *"bad.yaml:2"* && "$msg" == *"jpeg_quality"* ]]; then ok "bad config value: exit $rc with file:line and key"; else bad "bad config value (rc=$rc)" "$msg"; fi
msg=$("$BIN" serve --config "$T/lipsync.yaml" --server.prot 5 --print-config 2>&1)
if [[ $? -ne 0 && "$msg" == *"server.prot"* ]]; then ok "misspelt flag refused"; else bad "misspelt flag" "$msg"; fi

# 3. A real server with metrics.
"$BIN" serve --config "$T/lipsync.yaml" --server.port "$PORT" --metrics.port "$MPORT" >"$T/srv.log" 2>&1 &
SRV=$!
for _ in $(seq 1 100); do
    "$BIN" client health --port "$PORT" >/dev/null 2>&1 && break
    sleep 0.1
done
if "$BIN" client health --port "$PORT" >"$T/h.txt" 2>&1; then ok "client health answers"; else bad "client health" "$(cat "$T/h.txt" "$T/srv.log")"; fi
r=$(get "http://127.0.0.1:$MPORT/readyz")
r=${r%%$'\n'*}
if [[ "$r" == 200 ]]; then ok "/readyz is 200 while serving"; else bad "/readyz: $r"; fi

espeak-ng -w "$T/s.wav" "Testing the server." 2>/dev/null
out=$("$BIN" client infer --port "$PORT" --model mini --audio "$T/s.wav" --batch 6 --out "$T/frames" 2>&1)
cnt=$(ls "$T/frames" 2>/dev/null | grep -c '\.jpg$')
if [[ $cnt -eq 6 ]]; then ok "client infer wrote 6 JPEG frames"; else bad "client infer wrote $cnt frames" "$out"; fi

m=$(get "http://127.0.0.1:$MPORT/metrics" | tail -n +2)
frames=$(grep -E '^lipsync_frames_total ' <<<"$m" | awk '{print $2}')
loaded=$(grep -E '^lipsync_avatars_loaded ' <<<"$m" | awk '{print $2}')
stages=$(grep -cE '^lipsync_stage_seconds_count\{stage="(audio|inference|encode)"\} [1-9]' <<<"$m")
if [[ "$frames" == 6 ]]; then ok "metrics count the 6 frames served"; else bad "lipsync_frames_total=$frames" "$(head -40 <<<"$m")"; fi
if [[ "$loaded" == 1 ]]; then ok "metrics report 1 loaded avatar"; else bad "lipsync_avatars_loaded=$loaded"; fi
if [[ $stages -eq 3 ]]; then ok "per-stage histograms observed"; else bad "stage histograms: $stages of 3"; fi
if /usr/bin/python3 -c "
import sys, re
ok = all(re.match(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{.*\})? [-+0-9.eE]+(Inf)?\$|^NaN\$', l) or l.startswith('#') for l in sys.stdin.read().splitlines() if l)
sys.exit(0 if ok else 1)" <<<"$m"; then ok "exposition format parses"; else bad "exposition format"; fi
r=$(get "http://127.0.0.1:$MPORT/nope")
r=${r%%$'\n'*}
if [[ "$r" == 404 ]]; then ok "unknown metrics path is 404"; else bad "unknown path: $r"; fi

# 4. SIGTERM: drains and exits 0.
kill -TERM "$SRV"
wait "$SRV"
rc=$?
SRV=""
if [[ $rc -eq 0 ]] && grep -q "stopped cleanly" "$T/srv.log"; then ok "SIGTERM: clean exit 0"; else bad "SIGTERM exit $rc" "$(tail -5 "$T/srv.log")"; fi

# 5. A server whose default model is broken refuses to start with a clear message.
mkdir -p "$T/root2/broken/frames"
printf 'not a jpeg' >"$T/root2/broken/frames/000000.jpg"
msg=$(timeout 60 "$BIN" serve --config "$T/lipsync.yaml" --models_root "$T/root2" --default_model broken --server.port "$PORT" 2>&1)
rc=$?
if [[ $rc -ne 0 && "$msg" == *broken* ]]; then ok "broken default model: exit $rc, names the model"; else bad "broken default model (rc=$rc)" "$msg"; fi

echo "1..$n"
echo "$pass passed, $fail failed"
[[ $fail -eq 0 ]]
