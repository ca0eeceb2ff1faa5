#!/usr/bin/env bash
# Integration test of `lipsync audio features` through the real binary: a real espeak-ng WAV
# (22.05 kHz, resampled) and the reference speech PCM .npy in; the written .npy files checked
# from outside with NumPy (shapes, padded-row layout, the mel against the float64 reference);
# exit codes and messages on bad input. TAP lines, then "N passed, N failed".
set -u
cd "$(dirname "$0")/.."
BIN=${LIPSYNC_BIN:-build/lipsync}
SHARED=${SHARED_DIR:-../shared}
MODELS=${MODELS:-models}
PY=/usr/bin/python3
T=$(mktemp -d /tmp/lipsync-it-audio.XXXXXX)
trap 'rm -rf "$T"' EXIT
n=0 pass=0 fail=0 skip=0
ok() { n=$((n + 1)); pass=$((pass + 1)); echo "ok $n - $1"; }
bad() { n=$((n + 1)); fail=$((fail + 1)); echo "not ok $n - $1"; [[ -n "${2:-}" ]] && sed 's/^/#   /' <<<"$2"; }
skp() { n=$((n + 1)); skip=$((skip + 1)); echo "ok $n - $1 # SKIP $2"; }
finish() { echo "1..$n"; echo "$pass passed, $fail failed, $skip skipped"; [[ $fail -eq 0 ]]; exit; }

ENC="$MODELS/audio_encoder_tiny.onnx"
PCM="$SHARED/reference/audio/sanders_s0_pcm_f32.npy"

# 1. The reference PCM: mel within 2e-6 of the float64 reference (docs/AUDIO.md), features
#    [522, 512] with rows 0/1 and 520/521 duplicated.
if [[ -f "$PCM" && -f "$ENC" ]]; then
    out=$("$BIN" audio features --in "$PCM" --out "$T/f.npy" --mel "$T/m.npy" --encoder "$ENC" --threads 1 2>&1)
    rc=$?
    if [[ $rc -eq 0 && "$out" == *"features 522 x 512"* ]]; then ok "features of the reference PCM exit 0"; else bad "rc=$rc" "$out"; fi
    chk=$($PY - "$T/m.npy" "$T/f.npy" "$SHARED/reference/audio/sanders_s6_mel_norm_f64.npy" <<'PYEOF'
import sys, numpy as np
m, f, r = (np.load(p) for p in sys.argv[1:4])
ok = m.shape == (1674, 80) and m.dtype == np.float32 and float(np.abs(m - r).max()) <= 2e-6
ok = ok and f.shape == (522, 512) and (f[0] == f[1]).all() and (f[520] == f[521]).all()
ok = ok and not (f[1] == f[2]).all() and np.isfinite(f).all()
print("ok" if ok else "bad %s %s %g" % (m.shape, f.shape, float(np.abs(m - r).max())))
PYEOF
)
    if [[ "$chk" == ok ]]; then ok "mel matches the reference, features have the padded layout"; else bad "npy check" "$chk"; fi
else
    skp "reference PCM features" "reference data or $ENC missing"
    skp "npy layout" "reference data or $ENC missing"
fi

# 2. A real 22.05 kHz WAV from espeak-ng: resampled length and mel shape.
if command -v espeak-ng >/dev/null && espeak-ng -w "$T/hello.wav" "hello from the audio test" 2>/dev/null; then
    out=$("$BIN" audio features --in "$T/hello.wav" --mel "$T/hm.npy" 2>&1)
    rc=$?
    chk=$($PY - "$T/hello.wav" "$T/hm.npy" <<'PYEOF'
import sys, wave, math, numpy as np
w = wave.open(sys.argv[1]); rate, frames = w.getframerate(), w.getnframes()
n = math.ceil(frames * 16000 / rate); m = np.load(sys.argv[2])
print("ok" if m.shape == (1 + n // 200, 80) and m.max() > -4 else "bad %s vs %d" % (m.shape, 1 + n // 200))
PYEOF
)
    if [[ $rc -eq 0 && "$chk" == ok ]]; then ok "espeak-ng WAV resampled to 16 kHz, mel shape right"; else bad "espeak rc=$rc $chk" "$out"; fi
else
    skp "espeak-ng WAV" "espeak-ng not available"
fi

# 3. Bad input: clear message, non-zero exit.
expect_fail() { # name, expected substring, args...
    local name=$1 want=$2
    shift 2
    local out rc
    out=$("$BIN" audio "$@" 2>&1)
    rc=$?
    if [[ $rc -ne 0 && "$out" == *"$want"* ]]; then ok "$name: exit $rc, message names it"; else bad "$name rc=$rc" "$out"; fi
}
printf 'RIFF\x24\x00\x00\x00WAVEfmt ' >"$T/trunc.wav"
head -c 1000 /dev/urandom >"$T/noise.wav"
$PY -c "import numpy as np; np.save('$T/short.npy', np.zeros(2000, np.float32)); np.save('$T/nan.npy', np.array([0.1, np.nan] * 3000, np.float32)); np.save('$T/img.npy', np.zeros((4, 4), np.float32))"
expect_fail "missing file" "cannot open" features --in "$T/none.wav" --mel "$T/x.npy"
expect_fail "truncated WAV" "truncated" features --in "$T/trunc.wav" --mel "$T/x.npy"
expect_fail "random bytes" "not a WAV" features --in "$T/noise.wav" --mel "$T/x.npy"
expect_fail "NaN sample" "NaN" features --in "$T/nan.npy" --mel "$T/x.npy"
expect_fail "2-D PCM npy" "1-D" features --in "$T/img.npy" --mel "$T/x.npy"
if [[ -f "$ENC" ]]; then
    expect_fail "shorter than one window" "3000" features --in "$T/short.npy" --out "$T/x.npy" --encoder "$ENC"
else
    skp "shorter than one window" "$ENC missing"
fi
expect_fail "no output requested" "--out" features --in "$T/short.npy"
expect_fail "unknown subcommand" "unknown subcommand" frobnicate
out=$("$BIN" audio --help 2>&1)
if [[ $? -eq 0 && "$out" == *"usage: lipsync audio features"* ]]; then ok "audio --help"; else bad "help" "$out"; fi
finish
