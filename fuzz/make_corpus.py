# SPDX-License-Identifier: MIT
"""fuzz/make_corpus.py: writes the seed corpora fuzz/corpus/<target>/ for `make fuzz`.

Small real files of every form each parser accepts (dtypes and .npy versions, WAV encodings
including espeak-ng speech, JPEG/PNG variants, both rect JSON forms, configs in the lipsync and
Go layouts, one serialized request per field of every request message, small avatar packages). Run with Debian's
Python: /usr/bin/python3 fuzz/make_corpus.py [--build build]. Needs numpy, PIL, protoc and,
for the speech WAV, espeak-ng (skipped if missing). The output is committed; rerun after a
proto or format change."""
import argparse
import io
import json
import os
import re
import shutil
import struct
import subprocess
import sys

import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "fuzz", "corpus")


def put(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def npy_seeds():
    rng = np.random.default_rng(1)
    arrays = {
        "f32_2x3": rng.standard_normal((2, 3)).astype("<f4"),
        "f64_4": rng.standard_normal(4),
        "u8_2x2x3": rng.integers(0, 255, (2, 2, 3), dtype=np.uint8),
        "i16_5": rng.integers(-300, 300, 5).astype("<i2"),
        "i32_3x1": rng.integers(-9, 9, (3, 1)).astype("<i4"),
        "i64_2": np.array([1, -2], dtype="<i8"),
        "f32_scalar": np.array(1.5, dtype="<f4"),
        "f32_empty": np.zeros((0, 512), dtype="<f4"),
        "f32_fortran": np.asfortranarray(rng.standard_normal((3, 4)).astype("<f4")),
        "aud_ave_like": rng.standard_normal((3, 512)).astype("<f4"),
    }
    for name, a in arrays.items():
        b = io.BytesIO()
        np.save(b, a)
        put("npy", name + ".npy", b.getvalue())
    # Format versions 2.0 and 3.0 (4-byte header length; 3.0 allows utf-8 in the header).
    for ver in ((2, 0), (3, 0)):
        b = io.BytesIO()
        np.lib.format.write_array(b, arrays["f32_2x3"], version=ver)
        put("npy", f"v{ver[0]}.npy", b.getvalue())


def wav_bytes(rate, channels, bits, fmt, frames):
    """A RIFF/WAVE file; fmt 1 = PCM, 3 = IEEE float, 0xFFFE = extensible (PCM subformat)."""
    data = frames
    block = channels * bits // 8
    if fmt == 0xFFFE:
        sub = struct.pack("<HHI", 22, bits, (1 << channels) - 1) + \
            b"\x01\x00\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
        fmtck = struct.pack("<HHIIHH", fmt, channels, rate, rate * block, block, bits) + sub
    else:
        fmtck = struct.pack("<HHIIHH", fmt, channels, rate, rate * block, block, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmtck)) + fmtck
    body += b"LIST" + struct.pack("<I", 4) + b"INFO"  # an extra chunk to skip
    body += b"data" + struct.pack("<I", len(data)) + data + (b"\x00" if len(data) & 1 else b"")
    return b"RIFF" + struct.pack("<I", len(body)) + body


def wav_seeds():
    t = np.arange(1600) / 16000.0
    x = 0.5 * np.sin(2 * np.pi * 440 * t)
    put("wav", "s16_16k_mono.wav", wav_bytes(16000, 1, 16, 1, (x * 32767).astype("<i2").tobytes()))
    t2 = np.arange(441) / 44100.0
    y = 0.5 * np.sin(2 * np.pi * 440 * t2)
    st = np.stack([y, -y], 1)
    put("wav", "f32_44k_stereo.wav", wav_bytes(44100, 2, 32, 3, st.astype("<f4").tobytes()))
    put("wav", "u8_8k_mono.wav", wav_bytes(8000, 1, 8, 1, ((y[:200] + 1) * 127).astype("u1").tobytes()))
    s24 = (y[:300] * 8388607).astype("<i4")
    b24 = b"".join(int(v).to_bytes(4, "little", signed=True)[:3] for v in s24)
    put("wav", "s24_22k_mono.wav", wav_bytes(22050, 1, 24, 1, b24))
    put("wav", "s32_48k_mono.wav", wav_bytes(48000, 1, 32, 1, (y[:300] * 2**31 * 0.9).astype("<i4").tobytes()))
    put("wav", "f64_16k_mono.wav", wav_bytes(16000, 1, 64, 3, x[:400].astype("<f8").tobytes()))
    put("wav", "ext_s16_16k.wav", wav_bytes(16000, 1, 16, 0xFFFE, (x[:400] * 30000).astype("<i2").tobytes()))
    put("wav", "empty_data.wav", wav_bytes(16000, 1, 16, 1, b""))
    if shutil.which("espeak-ng"):
        w = subprocess.run(["espeak-ng", "--stdout", "-s", "220", "hi"], capture_output=True,
                           check=True).stdout
        put("wav", "espeak_hi_22k.wav", w)


def rect_seeds():
    put("rects", "array.json", json.dumps([[100, 120, 428, 448], [101, 121, 429, 449]]).encode())
    put("rects", "keyed.json", json.dumps({"0": {"rect": [10, 20, 338, 348]},
                                           "1": {"rect": [11, 21, 339, 349]}}).encode())
    put("rects", "floats.json", b"[[100.4, 120.6, 428.0, 448.9]]")
    put("rects", "empty.json", b"[]")
    put("rects", "spaces.json", b' \n[ [ 0 , 0 , 328 , 328 ] ]\n')
    put("rects", "keyed_extra.json", b'{"0": {"rect": [1,2,3,4], "lms": [1,2]}, "2": {"rect": [5,6,7,8]}}')


def image_seeds():
    rng = np.random.default_rng(2)
    rgb = Image.fromarray(rng.integers(0, 255, (24, 40, 3), dtype=np.uint8))
    gray = rgb.convert("L")
    for name, img, kw in [("base_420.jpg", rgb, {"quality": 75}),
                          ("base_444.jpg", rgb, {"quality": 90, "subsampling": 0}),
                          ("prog.jpg", rgb, {"quality": 60, "progressive": True}),
                          ("gray.jpg", gray, {"quality": 80}),
                          ("cmyk.jpg", rgb.convert("CMYK"), {"quality": 70}),
                          ("restart.jpg", rgb, {"quality": 50, "optimize": True})]:
        b = io.BytesIO()
        img.save(b, "JPEG", **kw)
        put("jpeg", name, b.getvalue())
    for name, img, kw in [("rgb.png", rgb, {}),
                          ("rgba.png", rgb.convert("RGBA"), {}),
                          ("gray.png", gray, {}),
                          ("palette.png", rgb.convert("P"), {}),
                          ("gray16.png", Image.fromarray((np.asarray(gray).astype(np.uint16) * 257)), {}),
                          ("rgb_l9.png", rgb, {"compress_level": 9}),
                          ("one_px.png", Image.new("RGB", (1, 1), (1, 2, 3)), {})]:
        b = io.BytesIO()
        img.save(b, "PNG", **kw)
        put("png", name, b.getvalue())


def config_seeds():
    shutil.copy(os.path.join(ROOT, "deploy", "lipsync.yaml"), os.path.join(OUT, "config", "example.yaml"))
    put("config", "min.yaml", b"server:\n  port: 50053\nlog:\n  level: debug\n")
    put("config", "models.yaml", b"models_root: /var/lib/lipsync/avatars\nmodels:\n  demo:\n"
        b"    model_path: demo/unet.onnx\n    preload: true\n")
    put("config", "go_layout.yaml", b'server:\n  port: ":50051"\nlogging:\n  level: info\n'
        b'gpus:\n  assignment_strategy: "round-robin"\n  enabled: true\nonnx:\n  cuda_device_id: 0\n'
        b'capacity:\n  idle_unload_minutes: 5\n')
    put("config", "flow.yaml", b"{server: {port: 1, services: [monolithic.MonolithicService]}, "
        b"metrics: {port: 9100}, output: {format: png, png_level: 3}}\n")
    put("config", "anchors.yaml", b"a: &x 5\nserver:\n  port: *x\n")


def proto_seeds(build):
    table = os.path.join(ROOT, build, "fuzz", "proto_requests.h")
    syms = re.findall(r"X\((\w+)__descriptor\)", open(table).read())
    msgs, enums = {}, set()  # symbol -> (proto file, full name, body)
    for pf in sorted(os.listdir(os.path.join(ROOT, "proto"))):
        text = open(os.path.join(ROOT, "proto", pf)).read()
        pkg = re.search(r"^package\s+([\w.]+);", text, re.M).group(1)
        enums.update(re.findall(r"^\s*enum\s+(\w+)", text, re.M))
        # A message body ends at the first "}" in column 0, or at once for "message X {}".
        for m in re.finditer(r"^message\s+(\w+)\s*\{(?:\}|(.*?)^\})", text, re.M | re.S):
            snake = re.sub(r"(?<!^)(?=[A-Z])", "_", m.group(1)).lower()
            body = m.group(2) or ""
            msgs[pkg.replace(".", "__") + "__" + snake] = (pf, f"{pkg}.{m.group(1)}", body)
            msgs.setdefault("@" + m.group(1), (pf, f"{pkg}.{m.group(1)}", body))
    sample = {"string": '"demo"', "bytes": r'"\000\001\002\003\200\377\000\000\000\000\200?"',
              "int32": "4", "int64": "40", "uint32": "7", "uint64": "7", "float": "16000",
              "double": "0.5", "bool": "true", "sint32": "-1", "fixed32": "1"}

    def fields(body):
        return re.findall(r"^\s*(repeated\s+)?([\w.]+)\s+(\w+)\s*=\s*(\d+)", body, re.M)

    def text_for(typ, depth):
        if typ in sample:
            return sample[typ]
        if typ in enums:
            return "1"
        sub = msgs.get("@" + typ.split(".")[-1])
        if not sub or depth > 2:
            return "{}"
        parts = []
        for rep, t, n, _ in fields(sub[2]):
            if "oneof" in sub[2] and parts:
                break
            parts.append(f"{n}: {text_for(t, depth + 1)}")
        return "{" + " ".join(parts) + "}"

    count = 0
    for idx, sym in enumerate(syms):
        if sym not in msgs:
            print(f"make_corpus: no .proto message for {sym}", file=sys.stderr)
            continue
        pf, full, body = msgs[sym]
        variants = [""] + [f"{n}: {text_for(t, 0)}" + (f" {n}: {text_for(t, 0)}" if rep else "")
                           for rep, t, n, _ in fields(body)]
        for k, txt in enumerate(variants):
            r = subprocess.run(["protoc", "-I" + os.path.join(ROOT, "proto"), "--encode=" + full, pf],
                               input=txt.encode(), capture_output=True, cwd=os.path.join(ROOT, "proto"))
            if r.returncode != 0:
                print(f"make_corpus: protoc {full} {txt!r}: {r.stderr.decode().strip()}", file=sys.stderr)
                continue
            put("proto", f"{idx:02d}_{sym}_{k}.bin", bytes([idx]) + r.stdout)
            count += 1
    return count


def avatar_seeds():
    """Packages for fuzz_avatar: parts joined by the marker (see fuzz/fuzz_avatar.c)."""
    sep = b"\xffSEP"
    rng = np.random.default_rng(3)
    frames_jpg, frames_png = [], []
    for i in range(2):
        img = Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
        b = io.BytesIO()
        img.save(b, "JPEG", quality=40)
        frames_jpg.append(b.getvalue())
        b = io.BytesIO()
        img.save(b, "PNG")
        frames_png.append(b.getvalue())
    yaml = (b"format_version: 1\nid: fuzz\nfps: 25\nwidth: 64\nheight: 48\nframe_count: 2\n"
            b"unet: unet.onnx\nblend: feather\n")
    rects = json.dumps([[8, 8, 40, 40], [9, 9, 41, 41]]).encode()
    keyed = json.dumps({"0": {"rect": [8, 8, 40, 40]}, "1": {"rect": [9, 9, 41, 41]}}).encode()
    b = io.BytesIO()
    np.save(b, rng.standard_normal((3, 512)).astype("<f4"))
    feats = b.getvalue()
    put("avatar", "canonical_jpg", sep.join([yaml, rects, b""] + frames_jpg))
    put("avatar", "canonical_png_keyed", sep.join([yaml, keyed, b""] + frames_png))
    put("avatar", "with_features", sep.join([yaml, rects, feats] + frames_jpg))
    put("avatar", "no_yaml", sep.join([b"", rects, b""] + frames_jpg))
    put("avatar", "one_frame", sep.join([yaml.replace(b"frame_count: 2", b"frame_count: 1"),
                                         rects, b"", frames_jpg[0]]))


def authwire_seeds():
    """Listing responses and requests as the auth guard's scanner sees them: the first byte
    picks field 1, sub-field 1 and count field 2 where the harness reads them (0x15 = field 2,
    sub 1, count 1; 0x24 = field 1, sub 1, count 2)."""
    def varint(n):
        out = b""
        while True:
            b = n & 0x7F
            n >>= 7
            out += bytes([b | (0x80 if n else 0)])
            if not n:
                return out

    def ld(num, data):
        return varint(num << 3 | 2) + varint(len(data)) + data

    def vi(num, n):
        return varint(num << 3) + varint(n)

    ids = [b"t1", b"alpha", b"b", b"", b"z" * 70]
    # ListModels / ListAvatars: repeated message {1: id, ...}.
    models = b"".join(ld(1, ld(1, i) + vi(2, 1) + ld(3, b"/m/" + i + b".onnx")) for i in ids)
    put("authwire", "list_models", b"\x24" + models)
    put("authwire", "list_avatars", b"\x24" + models + ld(2, b"t1") + vi(3, 1))
    # optimized ListModels: repeated string 1, count 2.
    put("authwire", "optimized_list", b"\x20" + b"".join(ld(1, i) for i in ids) + vi(2, len(ids)))
    # A request with the avatar nested two deep (lipsync.v1 StreamRequest.open.avatar_id).
    put("authwire", "stream_open", b"\x04" + ld(1, ld(1, b"t2") + vi(3, 1)))
    put("authwire", "mixed_types", b"\x24" + vi(1, 5) + ld(1, b"x") + b"\x0d\x01\x02\x03\x04")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    a = ap.parse_args()
    for t in ("npy", "wav", "rects", "jpeg", "png", "config", "proto", "avatar"):
        shutil.rmtree(os.path.join(OUT, t), ignore_errors=True)
        os.makedirs(os.path.join(OUT, t))
    npy_seeds()
    wav_seeds()
    rect_seeds()
    image_seeds()
    config_seeds()
    avatar_seeds()
    authwire_seeds()
    n = proto_seeds(a.build)
    print(f"make_corpus: wrote seeds ({n} protobuf requests) under {OUT}")


if __name__ == "__main__":
    main()
