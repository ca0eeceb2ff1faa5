#!/usr/bin/env bash
# Integration test of `lipsync avatar import|info` through the real binary: a 1280x720 25 fps
# test video made by the ffmpeg CLI, the reference landmarks (whose rects must come out exactly
# as the reference crop_rects.json), the written layout checked from outside (ffprobe, Python),
# and the CLI's exit codes and messages on bad input. TAP lines, then "N passed, N failed".
set -u
cd "$(dirname "$0")/.."
BIN=${LIPSYNC_BIN:-build/lipsync}
SHARED=${SHARED_DIR:-../shared}
PY=/usr/bin/python3
T=$(mktemp -d /tmp/lipsync-it-avatar.XXXXXX)
trap 'rm -rf "$T"' EXIT
n=0 pass=0 fail=0 skip=0
ok() { n=$((n + 1)); pass=$((pass + 1)); echo "ok $n - $1"; }
bad() { n=$((n + 1)); fail=$((fail + 1)); echo "not ok $n - $1"; [[ -n "${2:-}" ]] && sed 's/^/#   /' <<<"$2"; }
finish() { echo "1..$n"; echo "$pass passed, $fail failed, $skip skipped"; [[ $fail -eq 0 ]]; exit; }

if ! command -v ffmpeg >/dev/null || [[ ! -d "$SHARED/reference/visual/sanders_landmarks" ]]; then
    n=$((n + 1)); skip=$((skip + 1)); echo "ok $n - avatar CLI # SKIP ffmpeg or reference data missing"
    finish
fi
# 60 frames (2.4 s) of 1280x720 at 25 fps; a stand-in UNet (import checks only the ONNX lead byte).
ffmpeg -v error -f lavfi -i testsrc2=size=1280x720:rate=25 -frames:v 60 -c:v libx264 -preset ultrafast \
    -pix_fmt yuv420p "$T/in.mp4"
printf '\x08\x07stand-in' >"$T/unet.onnx"
LMS="$SHARED/reference/visual/sanders_landmarks"

out=$("$BIN" avatar import --video "$T/in.mp4" --landmarks "$LMS" --unet "$T/unet.onnx" \
      --out "$T/avatars/sanders" --quality 85 2>&1)
rc=$?
if [[ $rc -eq 0 && "$out" == *"imported 60 frames"* ]]; then ok "import from landmarks exits 0"; else bad "import rc=$rc" "$out"; fi

nfiles=$(ls "$T/avatars/sanders/frames" 2>/dev/null | grep -cE '^[0-9]{6}\.jpg$')
if [[ "$nfiles" == 60 && -f "$T/avatars/sanders/frames/000059.jpg" ]]; then ok "60 frame JPEGs"; else bad "frame files: $nfiles"; fi
size=$(ffprobe -v error -show_entries stream=width,height -of csv=p=0 "$T/avatars/sanders/frames/000000.jpg" 2>/dev/null)
if [[ "$size" == "1280,720" ]]; then ok "frame JPEG decodes as 1280x720"; else bad "JPEG size '$size'"; fi

# The rects written from landmarks equal the first 60 reference rects exactly.
chk=$($PY - "$T/avatars/sanders/crop_rects.json" "$SHARED/reference/visual/sanders_crop_rects.json" <<'PYEOF'
import json, sys
got = json.load(open(sys.argv[1])); ref = json.load(open(sys.argv[2]))
print("same" if got == ref[:len(got)] and len(got) == 60 else "differ %d" % len(got))
PYEOF
)
if [[ "$chk" == same ]]; then ok "crop_rects.json = reference rects 0..59"; else bad "rects: $chk"; fi

y="$T/avatars/sanders/avatar.yaml"
if grep -qx 'frame_count: 60' "$y" && grep -qx 'id: sanders' "$y" && grep -qx 'width: 1280' "$y" \
   && grep -qx 'format_version: 1' "$y" && grep -q "^source: \"$T/in.mp4\"" "$y"; then
    ok "avatar.yaml keys"
else
    bad "avatar.yaml" "$(cat "$y" 2>&1)"
fi
if cmp -s "$T/unet.onnx" "$T/avatars/sanders/unet.onnx"; then ok "unet.onnx copied"; else bad "unet.onnx differs"; fi

out=$("$BIN" avatar info "$T/avatars/sanders" 2>&1)
if [[ $? -eq 0 && "$out" == *"crop rects:     60, side 18"* && "$out" == *"  ok"* ]]; then
    ok "info reports a consistent avatar"
else
    bad "info" "$out"
fi
rm "$T/avatars/sanders/frames/000059.jpg"
out=$("$BIN" avatar info "$T/avatars/sanders" 2>&1)
if [[ $? -eq 1 && "$out" == *"avatar.yaml says 60 frames, frames/ holds 59"* ]]; then
    ok "info exits 1 on a missing frame"
else
    bad "info on a broken avatar" "$out"
fi

# Fewer rects than frames: exit 1, both numbers, nothing created.
$PY -c "import json; json.dump([[10,10,50,50]]*40, open('$T/r40.json','w'))"
out=$("$BIN" avatar import --video "$T/in.mp4" --rects "$T/r40.json" --unet "$T/unet.onnx" --out "$T/avatars/b" 2>&1)
rc=$?
if [[ $rc -eq 1 && "$out" == *"60 frames"* && "$out" == *"40 crop rects"* && ! -e "$T/avatars/b" ]]; then
    ok "too few rects: exit 1, both counts named, no directory"
else
    bad "too few rects rc=$rc" "$out"
fi
if ls -a "$T/avatars" | grep -q import-; then bad "temporary directory left behind"; else ok "no temporary directory left"; fi

"$BIN" avatar --help >/dev/null 2>&1; rc1=$?
"$BIN" avatar import --video x.mp4 >/dev/null 2>&1; rc2=$?
"$BIN" avatar import --video x --rects r --unet u --out o --quality 0 >/dev/null 2>&1; rc3=$?
"$BIN" avatar frobnicate >/dev/null 2>&1; rc4=$?
if [[ $rc1 -eq 0 && $rc2 -eq 2 && $rc3 -eq 2 && $rc4 -eq 2 ]]; then
    ok "usage errors exit 2, --help exits 0"
else
    bad "exit codes help=$rc1 missing=$rc2 quality=$rc3 unknown=$rc4"
fi
finish
