#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Tests of the generated models and the demo avatar (tools/): I/O contract, size, ONNX Runtime
(through `lipsync model run`) against the independent NumPy pass, determinism, the demo UNet's
mouth following the audio, and the demo avatar's layout and mouth placement.

Plain script for /usr/bin/python3; prints TAP lines and ends with "N passed, N failed" (and
", N skipped" when a test could not run here).
Environment: MODELS (models dir, default models), LIPSYNC_BIN (default build/lipsync),
SHARED_DIR (default ../shared). Run from the repository root.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnx
from PIL import Image

from lstest import BIN, MODELS, PY, ROOT, SHARED, finish, skipped, tap

sys.path.insert(0, os.path.join(ROOT, "tools"))
import check_models as C  # noqa: E402
import lipsync_models as L  # noqa: E402

ALL = ["unet328.onnx", "audio_encoder.onnx", "unet_tiny.onnx", "audio_encoder_tiny.onnx",
       "unet_demo.onnx"]
UNET_IO = ([("input", ["batch", 6, 320, 320]), ("audio", ["batch", 32, 16, 16])],
           [("output", ["batch", 3, 320, 320])])
ENC_IO = ([("mel_spectrogram", ["batch", 1, 80, 16])], [("audio_features", ["batch", 512])])


class Skip(Exception):
    pass


def run_test(fn):
    """Runs one test function: passed (with its time), skipped (Skip), or failed with the
    reason (a failed assertion or a crash)."""
    name = fn.__name__
    t0 = time.time()
    try:
        fn()
    except Skip as e:
        skipped(name, e)
    except Exception as e:
        print("#   %s: %s: %s" % (name, type(e).__name__, e))
        tap(False, name)
    else:
        tap(True, "%s (%.1f s)" % (name, time.time() - t0))


def need_models(*names):
    for n in names:
        if not os.path.isfile(os.path.join(MODELS, n)):
            raise Skip("%s not in %s (make models)" % (n, MODELS))


def need_lipsync():
    if not os.access(BIN, os.X_OK):
        raise Skip("%s not built" % BIN)


def lipsync(*args):
    r = subprocess.run([BIN] + list(args), capture_output=True, text=True)
    assert r.returncode == 0, "lipsync %s: rc %d: %s" % (" ".join(args), r.returncode, r.stderr)
    return r.stdout


def ort_run(model, arrays, tmp):
    """Runs a model through `lipsync model run` on the given arrays (in model input order)."""
    cmd = ["model", "run", model]
    for k, a in enumerate(arrays):
        p = os.path.join(tmp, "in%d.npy" % k)
        np.save(p, np.ascontiguousarray(a, np.float32))
        cmd += ["--in", p]
    out = os.path.join(tmp, "out.npy")
    lipsync(*(cmd + ["--out", out]))
    return np.load(out)


def io_of(model):
    def dims(vi):
        return [d.dim_param if d.dim_param else d.dim_value
                for d in vi.type.tensor_type.shape.dim]
    return ([(i.name, dims(i)) for i in model.graph.input],
            [(o.name, dims(o)) for o in model.graph.output])


# ---- tests ---------------------------------------------------------------------------------------
def t_io_contract():
    """Names and shapes (MODEL.md) in the files, and as ONNX Runtime reports them."""
    need_models(*ALL)
    need_lipsync()
    for name in ALL:
        m = onnx.load(os.path.join(MODELS, name))
        onnx.checker.check_model(m)
        want = ENC_IO if name.startswith("audio_encoder") else UNET_IO
        assert io_of(m) == want, "%s: I/O %s, expected %s" % (name, io_of(m), want)
        assert m.opset_import[0].version == L.OPSET
        info = lipsync("model", "info", os.path.join(MODELS, name))
        for n, shape in want[0] + want[1]:
            ort = "[%s]" % ",".join("-1" if d == "batch" else str(d) for d in shape)
            assert any(line.split()[1:3] == [n, ort] for line in info.splitlines()
                       if len(line.split()) >= 3), "%s: ORT reports\n%s\nexpected %s %s" % (
                name, info, n, ort)


def t_size_of_unet328():
    """Parameter count within 1% of MODEL.md's 12.19 M and MACs within 2% of 4.9 GMAC/frame
    (BN folded: the count includes the folded biases, MODEL.md's figure is approximate)."""
    need_models("unet328.onnx", "audio_encoder.onnx")
    m = onnx.load(os.path.join(MODELS, "unet328.onnx"))
    p, macs = L.param_count(m), L.conv_macs(m)
    print("#   unet328: %d params, %.3f GMAC/frame" % (p, macs / 1e9))
    assert abs(p / 12.19e6 - 1) < 0.01, "unet328 has %d params, expected 12.19 M +-1%%" % p
    assert abs(macs / 4.9e9 - 1) < 0.02, "unet328 has %.3f GMAC, expected 4.9 +-2%%" % (macs / 1e9)
    for name in ("unet_tiny.onnx", "audio_encoder_tiny.onnx"):
        need_models(name)
        p = L.param_count(onnx.load(os.path.join(MODELS, name)))
        assert p < 100000, "%s has %d params; tiny models must stay small" % (name, p)


def _check(name, batch):
    need_models(name)
    need_lipsync()
    r = C.check(MODELS, BIN, name, batch)
    print("#   %s batch %d: max abs err %.3g, rel %.3g (tol %g), numpy %.1f s"
          % (name, batch, r["max_abs"], r["rel"], C.TOLERANCE, r["numpy_s"]))
    assert r["ok"], "%s: relative error %.3g above %g" % (name, r["rel"], C.TOLERANCE)
    return r


def t_tiny_models_match_numpy():
    """Tolerance 1e-4 relative to the output's max: see check_models.TOLERANCE."""
    for n in ("unet_tiny.onnx", "audio_encoder_tiny.onnx", "unet_demo.onnx"):
        _check(n, 2)


def t_full_audio_encoder_matches_numpy():
    _check("audio_encoder.onnx", 2)


def t_full_unet328_matches_numpy():
    """Batch 1 keeps the float64 NumPy pass at 320x320 to several seconds here."""
    _check("unet328.onnx", 1)


def t_checker_catches_a_wrong_graph():
    """The check must fail on a model that differs from the spec in one detail: the tiny UNet
    with half-pixel instead of align_corners upsampling, and with one swapped concat order."""
    need_models("unet_tiny.onnx", "audio_encoder_tiny.onnx", "unet_demo.onnx")
    need_lipsync()
    m = onnx.load(os.path.join(MODELS, "unet_tiny.onnx"))
    for node in m.graph.node:
        if node.op_type == "Resize":
            for a in node.attribute:
                if a.name == "coordinate_transformation_mode":
                    a.s = b"half_pixel"
    m2 = onnx.load(os.path.join(MODELS, "unet_tiny.onnx"))
    concat = [n for n in m2.graph.node if n.op_type == "Concat"][-1]
    concat.input[0], concat.input[1] = concat.input[1], concat.input[0]
    for bad in (m, m2):
        with tempfile.TemporaryDirectory(prefix="test_models_") as tmp:
            onnx.save(bad, os.path.join(tmp, "unet_tiny.onnx"))
            r = C.check(tmp, BIN, "unet_tiny.onnx", 1)
            print("#   wrong graph: rel err %.3g" % r["rel"])
            assert not r["ok"] and r["rel"] > 100 * C.TOLERANCE, \
                "a wrong graph passed the check (rel err %.3g)" % r["rel"]
            # and the command-line tool exits 1 on it
            for n in ("audio_encoder_tiny.onnx", "unet_demo.onnx"):
                shutil.copy(os.path.join(MODELS, n), tmp)
            rc = subprocess.run([PY, os.path.join(ROOT, "tools", "check_models.py"), "--models",
                                 tmp, "--lipsync", BIN], capture_output=True).returncode
            assert rc == 1, "check_models.py exited %d on a wrong graph, expected 1" % rc


def t_generation_is_deterministic():
    """Two runs of gen_models.py write identical bytes (tiny and demo models; the demo includes
    the calibration through the full audio encoder), equal to the files in MODELS too if those
    were made by the same generator."""
    names = ["unet_tiny.onnx", "audio_encoder_tiny.onnx", "unet_demo.onnx"]
    blobs = []
    with tempfile.TemporaryDirectory(prefix="test_models_") as tmp:
        for k in range(2):
            d = os.path.join(tmp, str(k))
            subprocess.run([PY, os.path.join(ROOT, "tools", "gen_models.py"), "--out", d,
                            "--quiet", "--only", ",".join(names)], check=True)
            assert sorted(os.listdir(d)) == sorted(names), os.listdir(d)
            blobs.append([open(os.path.join(d, n), "rb").read() for n in names])
    for n, a, b in zip(names, blobs[0], blobs[1]):
        assert a == b, "%s differs between two runs" % n
    rc = subprocess.run([PY, os.path.join(ROOT, "tools", "gen_models.py"), "--out", "/tmp/x",
                         "--only", "nope.onnx"], capture_output=True).returncode
    assert rc == 2, "an unknown --only name must be a usage error, got rc %d" % rc


def _avatar(tmp, frames):
    d = os.path.join(tmp, "avatar")
    subprocess.run([PY, os.path.join(ROOT, "tools", "gen_avatar.py"), "--out", d, "--unet",
                    os.path.join(MODELS, "unet_demo.onnx"), "--frames", str(frames)],
                   check=True, capture_output=True)
    return d


def _unet_input(frame_path, rect):
    """MODEL.md preprocessing (PIL bicubic instead of OpenCV's a=-0.75: close enough to place a
    mouth, which is all these tests need): [6,320,320] float32 BGR/255, and the real crop."""
    x1, y1, x2, y2 = rect
    crop = Image.open(frame_path).convert("RGB").crop((x1, y1, x2, y2))
    c = np.asarray(crop.resize((328, 328), Image.BICUBIC), np.float32)[4:324, 4:324, ::-1] / 255
    masked = c.copy()
    masked[5:310, 5:315] = 0
    return np.concatenate([c.transpose(2, 0, 1), masked.transpose(2, 0, 1)]), c


def _speech_features(tmp):
    """Encoder features (through ORT) of the 640 ms speech reference, padded as AUDIO.md says."""
    ref = os.path.join(SHARED, "reference", "audio", "speech640ms_reference.json")
    if not os.path.isfile(ref):
        raise Skip("%s missing" % ref)
    mel = np.array(json.load(open(ref))["mel_spectrogram"], np.float64)
    f = ort_run(os.path.join(MODELS, "audio_encoder.onnx"), [L.mel_windows(mel)], tmp)
    return np.concatenate([f[:1], f, f[-1:]])


def _window(padded, i):
    """UNet audio input of video frame i: padded rows [i-8, i+8), zero outside."""
    rows = np.zeros((16, 512), np.float32)
    for k in range(16):
        j = i - 8 + k
        if 0 <= j < len(padded):
            rows[k] = padded[j]
    return rows.reshape(32, 16, 16)


def t_demo_mouth_follows_audio():
    """On a demo-avatar crop, zero and silence audio leave the crop untouched (closed mouth);
    speech opens a dark mouth whose area grows with the demo's energy measure."""
    need_models("unet_demo.onnx", "audio_encoder.onnx")
    need_lipsync()
    with tempfile.TemporaryDirectory(prefix="test_models_") as tmp:
        av = _avatar(tmp, 1)
        rect = json.load(open(os.path.join(av, "crop_rects.json")))[0]
        vis, real = _unet_input(os.path.join(av, "frames", "000000.jpg"), rect)
        padded = _speech_features(tmp)
        silence = ort_run(os.path.join(MODELS, "audio_encoder.onnx"),
                          [np.full((1, 1, 80, 16), -4.0)], tmp)[0]
        frames = list(range(len(padded) + 8))
        auds = [np.zeros((32, 16, 16), np.float32), np.tile(silence, (16, 1)).reshape(32, 16, 16)]
        auds += [_window(padded, i) for i in frames]
        out = ort_run(os.path.join(MODELS, "unet_demo.onnx"),
                      [np.stack([vis] * len(auds)), np.stack(auds)], tmp)
    base = real.transpose(2, 0, 1)
    # 1e-6: the output is the input crop through a few float32 multiply-adds with alpha = 0
    assert np.abs(out[0] - base).max() < 1e-6, "zero audio must leave the crop unchanged"
    assert np.abs(out[1] - base).max() < 1e-6, "encoded silence must leave the crop unchanged"
    # Dark pixels: mean BGR below 0.2 (the drawn lips' darkest line is about 0.3).
    dark = [int((o.mean(axis=0) < 0.2).sum()) for o in out]
    opens = L.demo_open({"direction": _init("demo.direction")[:, 0],
                         "threshold": float(_init("demo.threshold")),
                         "scale": float(_init("demo.scale")),
                         "gate": 2.0 / float(_init("demo.gate_inv"))},
                        np.stack(auds[2:]).reshape(-1, 16, 512)[:, L.DEMO_ROWS[0]:L.DEMO_ROWS[1]])
    print("#   dark px: zero %d, silence %d, speech frames %s" % (dark[0], dark[1], dark[2:]))
    print("#   openness: %s" % np.round(opens, 2).tolist())
    assert dark[0] == dark[1] == int((base.mean(axis=0) < 0.2).sum())
    assert max(dark[2:]) > 1500, "loudest speech frame opens only %d dark px" % max(dark[2:])
    assert dark[2] == dark[0], "frame 0 (rows 6,7 are before the audio) must be closed"
    # Area grows with openness: sorted by openness, areas never shrink by more than 2 px
    # (the 0.2 threshold on a soft, 1.5 px edge can move single pixels).
    order = np.argsort(opens)
    areas = np.array(dark[2:])[order]
    assert np.all(np.diff(areas) >= -2), "dark area not monotonic in openness: %s" % list(
        zip(np.round(opens[order], 3), areas))
    mids = [a for a, o in zip(dark[2:], opens) if 0.05 < o < 0.6 * opens.max()]
    assert mids and all(dark[0] < a < max(dark[2:]) for a in mids), \
        "expected intermediate openings strictly between closed and widest: %s" % mids


_inits = {}


def _init(name):
    if not _inits:
        _inits.update(L.load_weights(os.path.join(MODELS, "unet_demo.onnx")))
    return _inits[name]


def t_demo_avatar_layout():
    """gen_avatar.py --frames 10: DATA.md canonical layout, values, determinism, and the drawn
    mouth where the demo UNet paints (lip pixels centred on DEMO_MOUTH within 3 px)."""
    need_models("unet_demo.onnx")
    with tempfile.TemporaryDirectory(prefix="test_models_") as tmp:
        t0 = time.time()
        av = _avatar(tmp, 10)
        dt = time.time() - t0
        files = sorted(os.listdir(av))
        assert files == ["avatar.yaml", "crop_rects.json", "frames", "unet.onnx"], files
        yaml = dict(line.split(": ", 1) for line in open(os.path.join(av, "avatar.yaml"))
                    .read().splitlines() if line and not line.startswith("#"))
        want = {"format_version": "1", "id": "demo", "fps": "25", "width": "1280",
                "height": "720", "frame_count": "10", "unet": "unet.onnx", "blend": "feather",
                "source": "generated by tools/gen_avatar.py"}
        assert yaml == want, yaml
        assert open(os.path.join(av, "unet.onnx"), "rb").read() == \
            open(os.path.join(MODELS, "unet_demo.onnx"), "rb").read()
        rects = json.load(open(os.path.join(av, "crop_rects.json")))
        frames = sorted(os.listdir(os.path.join(av, "frames")))
        assert frames == ["%06d.jpg" % i for i in range(10)], frames
        assert len(rects) == 10
        for r in rects:
            assert r[2] - r[0] == r[3] - r[1] and 170 <= r[2] - r[0] <= 190, r
            assert 0 <= r[0] and 0 <= r[1] and r[2] <= 1280 and r[3] <= 720, r
        assert len({tuple(r) for r in rects}) > 1, "the crop rect must follow the head sway"
        for i in (0, 9):
            im = Image.open(os.path.join(av, "frames", frames[i]))
            assert im.format == "JPEG" and im.size == (1280, 720), (im.format, im.size)
            _, c = _unet_input(os.path.join(av, "frames", frames[i]), rects[i])
            rgb = c[:, :, ::-1]
            # The line where the lips part (drawn RGB 118,52,58): red, dark, low green. The
            # demo opens the mouth around it. 3 px (UNet crop) allows for the rect's integer
            # rounding (<= 0.9 px) and JPEG/bicubic blur of a 2.5 px wide line.
            line = (rgb[:, :, 0] > 0.35) & (rgb[:, :, 0] < 0.6) & (rgb[:, :, 1] < 0.3)
            ys, xs = np.nonzero(line)
            assert len(xs) > 100, "no lip line found in the crop of frame %d" % i
            cx, cy = xs.mean(), ys.mean()
            print("#   frame %d: lip line centred at (%.1f, %.1f) in the UNet crop, demo mouth "
                  "at (%.0f, %.0f)" % (i, cx, cy, L.DEMO_MOUTH_CX, L.DEMO_MOUTH_CY))
            assert abs(cx - L.DEMO_MOUTH_CX) < 3 and abs(cy - L.DEMO_MOUTH_CY) < 3, (cx, cy)
        av2 = os.path.join(tmp, "again")
        subprocess.run([PY, os.path.join(ROOT, "tools", "gen_avatar.py"), "--out", av2, "--unet",
                        os.path.join(MODELS, "unet_demo.onnx"), "--frames", "10"], check=True,
                       capture_output=True)
        for rel in ["avatar.yaml", "crop_rects.json"] + ["frames/" + f for f in frames]:
            assert open(os.path.join(av, rel), "rb").read() == \
                open(os.path.join(av2, rel), "rb").read(), "%s differs between runs" % rel
        r = subprocess.run([PY, os.path.join(ROOT, "tools", "gen_avatar.py"), "--out", av2,
                            "--unet", os.path.join(tmp, "missing.onnx")], capture_output=True)
        assert r.returncode == 2 and b"missing.onnx" in r.stderr, r.stderr
    print("#   10-frame avatar in %.1f s" % dt)


def t_mel_front_end_matches_reference():
    """The NumPy mel used to calibrate the demo matches the shared reference mels (float64
    against upstream float64: measured ~5e-8; 1e-5 is the float32 tolerance of AUDIO.md)."""
    for name in ("sine440_reference.json", "speech640ms_reference.json"):
        p = os.path.join(SHARED, "reference", "audio", name)
        if not os.path.isfile(p):
            raise Skip("%s missing" % p)
        ref = json.load(open(p))
        got = L.mel_spectrogram(np.array(ref["audio"], np.float64))
        err = np.abs(got - np.array(ref["mel_spectrogram"])).max()
        print("#   %s: max err %.3g" % (name, err))
        assert err < 1e-5, "%s: mel max err %g" % (name, err)


def main():
    for t in (t_io_contract, t_size_of_unet328, t_tiny_models_match_numpy,
              t_full_audio_encoder_matches_numpy, t_full_unet328_matches_numpy,
              t_checker_catches_a_wrong_graph, t_generation_is_deterministic,
              t_demo_mouth_follows_audio, t_demo_avatar_layout,
              t_mel_front_end_matches_reference):
        run_test(t)
    finish()


if __name__ == "__main__":
    main()
