#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# tests/py/test_gateway.py: the browser gateway (gateway.port; docs/API.md "WebSocket gateway")
# against a real `lipsync serve` on loopback with the tiny models and a 12-frame test avatar:
# static files (and refusals of paths outside the web root), the WebSocket handshake, the
# avatar list, a Stream through the gateway whose speech frames are byte-identical to gRPC
# Render's (the gateway is a bridge, not a second renderer), idle frames, text-to-speech when
# espeak-ng is installed, and hostile input (unmasked and oversized frames, bad JSON, odd audio
# lengths, bad handshakes) answered with errors while the server stays up.
# Prints TAP lines and "N passed, N failed". Env: LIPSYNC_BIN, MODELS.
import json
import os
import shutil
import socket
import struct
import time

from lstest import (MODELS, all_passed, channel, finish, free_port, gen_stubs, http,
                    imports_failed, log_tail, make_avatar, run, serve, skip_all, speech,
                    started, stop, stub, tap, tmpdir, wait_until)

LIP_MAX_MESSAGE = 1 << 20  # LIP_GATEWAY_MAX_MESSAGE

try:
    import grpc  # noqa: F401 (lstest.channel)
    import numpy as np
    import websocket
except Exception as e:
    imports_failed("grpc/numpy/websocket (python3-websocket)", e)

for need in ("unet_tiny.onnx", "audio_encoder_tiny.onnx"):
    if not os.path.exists(os.path.join(MODELS, need)):
        skip_all("gateway", "%s missing (make models)" % need)

tmp = tmpdir("lipsync-gw-")
gen_stubs(tmp, "lipsync_v1")
pb, pbg = stub("lipsync_v1")

root = os.path.join(tmp, "root")
os.makedirs(root)
make_avatar(os.path.join(root, "t1"))
web = os.path.join(tmp, "web")
os.makedirs(web)
with open(os.path.join(web, "index.html"), "w") as f:
    f.write("<!doctype html><title>t</title>\n")
with open(os.path.join(web, "app.js"), "w") as f:
    f.write("console.log(1);\n")
with open(os.path.join(web, ".secret"), "w") as f:
    f.write("hidden\n")
with open(os.path.join(tmp, "outside.txt"), "w") as f:
    f.write("outside\n")

PORT, GW = free_port(), free_port()
srv, log = serve(["--host", "127.0.0.1", "--port", str(PORT), "--models-root", root,
                  "--default-model", "t1",
                  "--audio.encoder_path", os.path.join(MODELS, "audio_encoder_tiny.onnx"),
                  "--gateway.port", str(GW), "--gateway.web_root", web,
                  "--server.grace_period_s", "2"],
                 os.path.join(tmp, "server.log"))
BASE = "http://127.0.0.1:%d" % GW
WS = "ws://127.0.0.1:%d/ws" % GW


def get(path, method="GET"):
    return http(BASE + path, method)


started(wait_until(lambda: get("/healthz")[0] == 200, 60, srv),
        "serve starts the gateway on gateway.port", log)


def parse_frame(b):
    magic, idx, pts, flags, utt, uf, lat, af, _ = struct.unpack("<4sIdIiifiI", b[:40])
    return dict(magic=magic, index=idx, pts=pts, speech=bool(flags & 1), utt=utt, uf=uf,
                lat=lat, af=af, jpeg=b[40:])


def collect(ws, until, timeout=60):
    """Reads messages until until(frames, texts) is true; returns (frames, texts, audio)."""
    frames, texts, audio = [], [], []
    ws.settimeout(timeout)
    t_end = time.time() + timeout
    while time.time() < t_end:
        op, data = ws.recv_data()
        if op == websocket.ABNF.OPCODE_TEXT:
            texts.append(json.loads(data.decode()))
        elif op == websocket.ABNF.OPCODE_BINARY:
            if data[:4] == b"LSF1":
                frames.append(parse_frame(data))
            elif data[:4] == b"LSA1":
                audio.append(np.frombuffer(data[8:], np.float32))
        elif op == websocket.ABNF.OPCODE_CLOSE:
            break
        if until(frames, texts):
            break
    return frames, texts, audio


@run
def static_files():
    st, body, hd = get("/")
    tap(st == 200 and body.startswith(b"<!doctype html>") and
        hd["Content-Type"].startswith("text/html"), "GET / serves index.html as text/html")
    st, body, hd = get("/app.js")
    tap(st == 200 and "javascript" in hd["Content-Type"] and hd["X-Content-Type-Options"] ==
        "nosniff", "GET /app.js as JavaScript, nosniff")
    bad = ["/.secret", "/../outside.txt", "/%2e%2e/outside.txt", "//etc/passwd", "/a/../../x",
           "/nothere.js", "/" + "a" * 300]
    codes = [get(p)[0] for p in bad]
    tap(all(c == 404 for c in codes), "hidden files, .., //, long and missing paths are 404",
        str(codes))
    tap(get("/", "POST")[0] == 405, "POST is 405")
    tap(get("/ws")[0] == 400, "GET /ws without an upgrade is 400")


@run
def list_avatars():
    ws = websocket.create_connection(WS, timeout=10)
    ws.send(json.dumps({"type": "list"}))
    m = json.loads(ws.recv())
    ws.close()
    ids = [a["id"] for a in m.get("avatars", [])]
    tap(m.get("type") == "avatars" and ids == ["t1"] and m["default"] == "t1",
        "list: the server's avatars and default", str(m))
    tap(m.get("tts") == (shutil.which("espeak-ng") is not None),
        "list: tts says whether espeak-ng is installed")


@run
def stream_equals_render():
    x = speech(2.0, 1)
    chan = channel(PORT, receive_only=True)
    ref = pbg.LipSyncStub(chan).Render(pb.RenderRequest(audio=x.tobytes(), start_frame=3),
                                       timeout=120).frames
    ws = websocket.create_connection(WS, timeout=10)
    ws.send(json.dumps({"type": "open", "start_frame": 3, "idle": False, "paced": False,
                        "max_lag_frames": -1}))
    for i in range(0, len(x), 1234):  # odd chunk sizes: the server assembles windows
        ws.send_binary(x[i:i + 1234].tobytes())
    ws.send(json.dumps({"type": "end"}))
    fr, tx, _ = collect(ws, lambda f, t: any(m.get("kind") == "utterance_end" for m in t))
    ws.close()
    ev = [m for m in tx if m["type"] == "event"]
    tap(ev and ev[0]["kind"] == "opened" and ev[0]["avatar"] == "t1" and
        ev[0]["frame_count"] == 12, "open: the opened event names the avatar", str(ev[:1]))
    tap(len(fr) == len(ref) and len(ref) > 40, "as many frames as gRPC Render",
        "%d vs %d" % (len(fr), len(ref)))
    same = sum(1 for a, b in zip(fr, ref) if a["jpeg"] == b.image and a["index"] == b.index
               and a["af"] == b.avatar_frame)
    tap(same == len(ref), "every frame byte-identical to gRPC Render's (a bridge)",
        "%d of %d" % (same, len(ref)))
    tap(all(f["magic"] == b"LSF1" and f["speech"] and f["pts"] == 40 * f["index"] and
            f["utt"] == 1 and f["uf"] == f["index"] and f["lat"] > 0 for f in fr),
        "frame header: index, pts = 40 index, speech, utterance, utterance_frame, latency")
    ue = [m for m in ev if m["kind"] == "utterance_end"]
    tap(len(ue) == 1 and ue[0]["frames"] == len(ref), "utterance_end event with the count")


@run
def idle_frames():
    ws = websocket.create_connection(WS, timeout=10)
    ws.send(json.dumps({"type": "open"}))
    t0 = time.time()
    fr, _, _ = collect(ws, lambda f, t: len(f) >= 25, timeout=10)
    dt = time.time() - t0
    ws.close()
    # 25 idle frames at 25 fps take ~1 s; 0.6..3 s allows a loaded 2-core machine.
    tap(len(fr) == 25 and not any(f["speech"] for f in fr) and
        [f["index"] for f in fr] == list(range(25)) and 0.6 < dt < 3.0,
        "idle: 25 consecutive idle frames in about a second", "%d in %.2f s" % (len(fr), dt))


@run
def tts():
    if not shutil.which("espeak-ng"):
        tap(True, "say # SKIP espeak-ng not installed")
        return
    ws = websocket.create_connection(WS, timeout=10)
    ws.send(json.dumps({"type": "open", "idle": False, "paced": False, "max_lag_frames": -1}))
    ws.send(json.dumps({"type": "say", "text": "-w /etc/passwd hello; $(rm -rf x)"}))
    fr, tx, au = collect(ws, lambda f, t: any(m.get("kind") == "utterance_end" or
                                              m["type"] == "error" for m in t))
    ws.close()
    errs = [m for m in tx if m["type"] == "error"]
    tap(not errs, "say: no error", str(errs))
    n = sum(len(a) for a in au)
    # espeak-ng speaks the text in ~2-4 s; the frames must cover its audio: n/640 +- 2 frames
    tap(len(au) == 1 and 16000 < n < 16000 * 10, "say: the speech audio comes down (LSA1)",
        "%d samples" % n)
    tap(abs(len(fr) - n / 640.0) <= 2 and all(f["speech"] for f in fr),
        "say: speech frames cover the spoken audio", "%d frames for %d samples" % (len(fr), n))
    ws = websocket.create_connection(WS, timeout=10)
    ws.send(json.dumps({"type": "open", "idle": False}))
    ws.send(json.dumps({"type": "say", "text": "x" * 1001}))
    _, tx, _ = collect(ws, lambda f, t: any(m["type"] == "error" for m in t), timeout=10)
    ws.close()
    tap(any(m["type"] == "error" and "1000" in m["message"] for m in tx),
        "say: text over 1000 bytes is refused with the limit")


def raw_ws():
    s = socket.create_connection(("127.0.0.1", GW), timeout=10)
    s.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    h = b""
    while b"\r\n\r\n" not in h:
        c = s.recv(1)
        if not c:
            break
        h += c
    return s, h


def read_close(s):
    """Reads frames until a close frame; returns its code (or None)."""
    buf = b""
    s.settimeout(10)
    try:
        while True:
            c = s.recv(4096)
            if not c:
                return None
            buf += c
            while len(buf) >= 2:
                ln = buf[1] & 0x7f
                off = 2 + (2 if ln == 126 else 8 if ln == 127 else 0)
                if ln == 126:
                    ln = struct.unpack(">H", buf[2:4])[0]
                elif ln == 127:
                    ln = struct.unpack(">Q", buf[2:10])[0]
                if len(buf) < off + ln:
                    break
                if buf[0] & 0x0f == 8:
                    return struct.unpack(">H", buf[off:off + 2])[0] if ln >= 2 else 0
                buf = buf[off + ln:]
    except socket.timeout:
        return None


@run
def hostile():
    s, h = raw_ws()
    tap(h.startswith(b"HTTP/1.1 101") and b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in h,
        "handshake: 101 with the RFC 6455 example accept value")
    s.sendall(b"\x81\x05hello")  # unmasked
    tap(read_close(s) == 1002, "unmasked client frame: close 1002")
    s.close()
    s, _ = raw_ws()
    s.sendall(b"\x82\xff" + struct.pack(">Q", 1 << 40) + b"abcd")
    tap(read_close(s) == 1009, "2^40-byte length: close 1009, nothing allocated")
    s.close()
    s, _ = raw_ws()
    s.sendall(b"\x82\x80\x00\x00\x00\x00" * 600)  # a flood of empty messages
    tap(read_close(s) in (1008, None), "message flood: close 1008")
    s.close()
    ws = websocket.create_connection(WS, timeout=10)
    for m in ["{", "[]", '{"type":"nope"}', '{"type":"end"}', '{"type":"open","latency":"x"}']:
        ws.send(m)
    ws.send_binary(b"\x00\x00\x00")
    ws.send(json.dumps({"type": "open", "idle": False}))
    ws.send_binary(struct.pack("<f", float("nan")) * 1000)
    ws.send(json.dumps({"type": "end"}))
    _, tx, _ = collect(ws, lambda f, t: any(m["type"] == "closed" for m in t), timeout=20)
    ws.close()
    errs = [m["message"] for m in tx if m["type"] == "error"]
    closed = [m for m in tx if m["type"] == "closed"]
    tap(len(errs) >= 6 and any("JSON object" in e for e in errs) and
        any("unknown message type" in e for e in errs) and
        any("no stream is open" in e for e in errs) and any("latency" in e for e in errs) and
        any("multiple of 4" in e for e in errs), "bad messages get error messages naming why",
        str(errs))
    tap(closed and closed[0]["status"] == "INVALID_ARGUMENT",
        "NaN audio: the server's INVALID_ARGUMENT comes through as closed", str(closed))
    for hdr in [b"Sec-WebSocket-Version: 8\r\n", b"Sec-WebSocket-Key: short\r\n"]:
        s = socket.create_connection(("127.0.0.1", GW), timeout=10)
        base = (b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n")
        name = hdr.split(b":")[0]
        base = b"\r\n".join(l for l in base.split(b"\r\n") if not l.startswith(name))
        s.sendall(base + hdr + b"\r\n")
        r = s.recv(100)
        s.close()
        tap(r.startswith(b"HTTP/1.1 426") or r.startswith(b"HTTP/1.1 400"),
            "bad handshake (%s) refused" % hdr.strip().decode())
    s, _ = raw_ws()
    s.close()  # a client that vanishes mid-session
    # A client that sends 40 s of audio in 1 MiB messages (split by the gateway into the
    # server's 2 s pieces) and never reads: the server holds only 30 s ahead, so the gateway's
    # write waits while frames play out; the session must still end and let the server drain
    # on SIGTERM (checked below).
    hog = websocket.create_connection(WS, timeout=10)
    hog.send(json.dumps({"type": "open", "idle": False}))
    big = speech(16.0, 3).tobytes()[:LIP_MAX_MESSAGE]
    try:
        for _ in range(3):
            hog.send_binary(big)
    except Exception:
        pass
    hog.sock.close()
    ws = websocket.create_connection(WS, timeout=10)
    ws.send(json.dumps({"type": "list"}))
    tap(json.loads(ws.recv())["type"] == "avatars" and srv.poll() is None,
        "server and gateway still up after hostile input")
    ws.close()


tap(stop(srv) == 0, "server with the gateway drains and exits 0 on SIGTERM (a session that "
    "sent more audio than the server holds and read nothing included)")
if not all_passed():
    log_tail(log, 30)
finish()
