#!/usr/bin/env bash
# Integration test of `lipsync render` and the CLI's error handling: real binary, real models
# (tiny encoder, demo UNet on the demo avatar), real speech from espeak-ng, the MP4 read back
# with ffprobe. TAP lines, then "N passed, N failed".
set -u
cd "$(dirname "$0")/.."
BIN=${LIPSYNC_BIN:-build/lipsync}
MODELS=${MODELS:-models}
AVATARS=${AVATARS:-avatars}
T=$(mktemp -d /tmp/lipsync-it-render.XXXXXX)
trap 'rm -rf "$T"' EXIT
n=0 pass=0 fail=0
ok() { n=$((n + 1)); pass=$((pass + 1)); echo "ok $n - $1"; }
bad() { n=$((n + 1)); fail=$((fail + 1)); echo "not ok $n - $1"; [[ -n "${2:-}" ]] && sed 's/^/#   /' <<<"$2"; }

espeak-ng -s 160 -w "$T/speech.wav" "The quick brown fox jumps over the lazy dog, twice." 2>/dev/null
ENC="$MODELS/audio_encoder_tiny.onnx"

# 1. MP4 render: frame count = audio seconds x 25 (+-1), an audio stream, 1280x720.
out=$("$BIN" render --avatar "$AVATARS/demo" --audio "$T/speech.wav" --encoder "$ENC" --out "$T/a.mp4" --quiet 2>&1)
rc=$?
if [[ $rc -eq 0 && -s "$T/a.mp4" ]]; then ok "render to MP4 exits 0 and writes the file"; else bad "render to MP4" "$out"; fi
dur=$(ffprobe -v error -select_streams a:0 -show_entries stream=duration -of csv=p=0 "$T/speech.wav" 2>/dev/null)
frames=$(ffprobe -v error -count_packets -select_streams v:0 -show_entries stream=nb_read_packets -of csv=p=0 "$T/a.mp4" 2>/dev/null)
want=$(awk -v d="$dur" 'BEGIN { printf "%d", d * 25 + 0.5 }')
if [[ -n "$frames" && -n "$want" ]] && (( frames >= want - 1 && frames <= want + 1 )); then
    ok "MP4 has $frames frames for ${dur}s of audio (want $want +-1)"
else
    bad "MP4 frame count $frames vs audio ${dur}s x 25 = $want"
fi
astreams=$(ffprobe -v error -select_streams a -show_entries stream=codec_name -of csv=p=0 "$T/a.mp4" 2>/dev/null | wc -l)
if [[ $astreams -eq 1 ]]; then ok "MP4 carries one audio stream"; else bad "MP4 audio streams: $astreams"; fi
size=$(ffprobe -v error -select_streams v:0 -show_entries stream=width,height -of csv=p=0 "$T/a.mp4" 2>/dev/null)
if [[ "$size" == "1280,720" ]]; then ok "MP4 is 1280x720"; else bad "MP4 size '$size'"; fi

# 2. The mouth moves: frames of the speaking part differ in the mouth area from a silent frame.
ffmpeg -v error -i "$T/a.mp4" -vf "select='eq(n\,0)+eq(n\,30)',crop=180:120:550:330" -vsync 0 -f rawvideo -pix_fmt gray "$T/m.raw" 2>/dev/null
diff=$(/usr/bin/python3 -c "
import sys
b=open('$T/m.raw','rb').read(); h=len(b)//2
print(sum(abs(x-y) for x,y in zip(b[:h],b[h:]))/h)" 2>/dev/null)
if awk -v d="${diff:-0}" 'BEGIN { exit !(d > 2.0) }'; then ok "mouth region changes while speaking (mean abs diff $diff)"; else bad "mouth region static (mean abs diff ${diff:-?})"; fi

# 3. Image sequence render.
if "$BIN" render --avatar "$AVATARS/demo" --audio "$T/speech.wav" --encoder "$ENC" --out "$T/seq/" --format png --quiet >/dev/null 2>&1 \
    && [[ $(ls "$T/seq" | grep -c '\.png$') -eq $frames ]]; then
    ok "PNG sequence has the same $frames frames"
else
    bad "PNG sequence render"
fi

# 4. Errors: clear message, non-zero exit, nothing left that looks complete.
check_err() { # name expected-substring args...
    local name=$1 want=$2
    shift 2
    local msg
    msg=$("$BIN" render "$@" 2>&1)
    local rc=$?
    if [[ $rc -ne 0 && "$msg" == *"$want"* ]]; then ok "$name: exit $rc, '$want'"; else bad "$name (rc=$rc)" "$msg"; fi
}
check_err "missing avatar" "not found" --avatar "$T/nope" --audio "$T/speech.wav" --encoder "$ENC" --out "$T/x.mp4"
head -c 100 "$T/speech.wav" >"$T/trunc.wav"
check_err "truncated WAV" "trunc.wav" --avatar "$AVATARS/demo" --audio "$T/trunc.wav" --encoder "$ENC" --out "$T/x.mp4"
printf 'not audio at all' >"$T/garbage.wav"
check_err "garbage WAV" "garbage.wav" --avatar "$AVATARS/demo" --audio "$T/garbage.wav" --encoder "$ENC" --out "$T/x.mp4"
check_err "unwritable output" "" --avatar "$AVATARS/demo" --audio "$T/speech.wav" --encoder "$ENC" --out "/proc/nope/x.mp4"
check_err "missing encoder" "not found" --avatar "$AVATARS/demo" --audio "$T/speech.wav" --encoder "$T/none.onnx" --out "$T/x.mp4"
check_err "bad flag value" "--quality" --avatar "$AVATARS/demo" --audio "$T/speech.wav" --out "$T/x.mp4" --quality 500
check_err "missing arguments" "required" --avatar "$AVATARS/demo"
if [[ ! -e "$T/x.mp4" ]] && ! ls "$T" | grep -q partial; then ok "failed renders left no output behind"; else bad "leftover output: $(ls "$T")"; fi

# 5. Every command answers --help with exit 0.
for c in render serve client bench audio avatar model version; do
    if "$BIN" $c --help >/dev/null 2>&1; then ok "lipsync $c --help"; else bad "lipsync $c --help"; fi
done

echo "1..$n"
echo "$pass passed, $fail failed"
[[ $fail -eq 0 ]]
