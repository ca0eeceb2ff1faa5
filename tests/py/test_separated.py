#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# tests/py/test_separated.py: the separated deployment on loopback: real `lipsync serve
# --role inference` processes behind one `--role compositing` process whose inference_server.url
# lists them (ipv4:a,b: gRPC round_robin + retries). Checks, in order:
#   1. compositing started before any inference server: InferBatchComposite fails cleanly with
#      UNAVAILABLE, Health says inference_server_healthy=false and the compositing service is
#      NOT_SERVING in grpc.health.v1 while "" is SERVING; once a backend is up, calls succeed.
#   2. output equals a monolithic server's for the same request (same avatar, model, encoder).
#   3. 200 batches from two client threads; one inference server is SIGKILLed after 60 and
#      restarted after 120: every batch succeeds (retried on the other backend), and after the
#      restart both backends serve the remaining calls.
#   4. both inference servers killed: UNAVAILABLE; one restarted: success again.
#   5. raw_audio forwarded when the compositing server has no audio encoder (dns:/// target).
#   6. lipsync.LipSyncComposite on top of remote inference; GetModelStats background cache
#      hits/misses.
# Prints TAP lines and "N passed, N failed". Env: LIPSYNC_BIN, MODELS, AVATARS as in
# test_grpc_services.py.
import io
import json
import os
import signal
import subprocess
import threading
import time

from lstest import (MODELS, channel, code, feature_window, finish, free_port, gen_stubs,
                    health_status, imports_failed, kill, make_avatar, run, serve, started, stub,
                    tap, tmpdir, wait_serving)

try:
    import grpc
    import numpy as np
    from PIL import Image
except Exception as e:
    imports_failed("grpc/numpy/PIL", e)

if not os.path.exists(os.path.join(MODELS, "unet_tiny.onnx")):
    print("# models missing (make models): nothing to test")
    finish()

tmp = tmpdir("lipsync-sep-")
gen_stubs(tmp, "lipsync", "compositing", "inference", "monolithic")
cpb, cgrpc = stub("compositing")
ipb, igrpc = stub("inference")
lpb, lgrpc = stub("lipsync")

root = os.path.join(tmp, "root")
os.makedirs(root)
make_avatar(os.path.join(root, "t1"))
N = len(json.load(open(os.path.join(root, "t1", "crop_rects.json"))))
ENC = os.path.join(MODELS, "audio_encoder_tiny.onnx")


def start(name, args):
    return serve(["--host", "127.0.0.1", "--models-root", root, "--log.level", "warn"] + args,
                 os.path.join(tmp, name + ".log"))[0]


def start_inference(port):
    return start("inf%d" % port, ["--role", "inference", "--port", str(port),
                                  "--default-model", "t1", "--audio.encoder_path", ENC,
                                  "--server.grace_period_s", "1"])


P1, P2, PC, PM, PR = (free_port() for _ in range(5))
URL = "ipv4:127.0.0.1:%d,127.0.0.1:%d" % (P1, P2)
# Compositing first, with no inference server up: it must start and report the backend down.
comp_srv = start("compositing", ["--role", "compositing", "--port", str(PC),
                                 "--default-model", "t1", "--audio.encoder_path", ENC,
                                 "--inference_server.url", URL,
                                 "--inference_server.timeout_seconds", "10",
                                 "--inference_server.max_retries", "3",
                                 "--capacity.background_cache_frames", "600"])
chan = channel(PC)
comp = cgrpc.CompositingServiceStub(chan)
lsc = lgrpc.LipSyncCompositeStub(chan)
FEAT = feature_window().tobytes()
PCM = (0.3 * np.sin(np.arange(16000 * 20) * 2 * np.pi * 220 / 16000)).astype(np.float32)


def req(start_idx, B=2, pcm=True):
    # §1.5 context: samples [640*max(0,s-8), 640*(s+B+7)).
    a = 640 * max(0, start_idx - 8)
    b = 640 * (start_idx + B + 7)
    if pcm:
        return cpb.CompositeBatchRequest(model_id="t1", raw_audio=PCM[a:b].tobytes(),
                                         batch_size=B, start_frame_idx=start_idx)
    return cpb.CompositeBatchRequest(model_id="t1", audio_features=FEAT, batch_size=B,
                                     start_frame_idx=start_idx)


started(wait_serving(PC, "", proc=comp_srv),
        "compositing starts with no inference server up ('' SERVING)",
        os.path.join(tmp, "compositing.log"))
inf1 = inf2 = None


@run
def before_backends():
    t0 = time.time()
    c = code(comp.InferBatchComposite, req(0), timeout=20)
    dt = time.time() - t0
    # Bounded: a few connect attempts and retry backoffs, far below the 10 s call timeout.
    tap(c == grpc.StatusCode.UNAVAILABLE and dt < 8,
        "no backend: UNAVAILABLE, fails fast (%.2f s)" % dt,
        "code %s after %.1f s" % (c, dt))
    h = comp.Health(cpb.HealthRequest(), timeout=5)
    tap(not h.inference_server_healthy and h.inference_server_url == URL and not h.healthy,
        "Health: inference_server_healthy false, url reported, healthy false", str(h))
    tap(health_status(PC, "compositing.CompositingService") == 2 and
        health_status(PC, "") == 1,
        "grpc.health.v1: compositing NOT_SERVING without a backend, '' SERVING")


inf1 = start_inference(P1)
inf2 = start_inference(P2)
ok = wait_serving(P1, "inference.InferenceService") and wait_serving(P2,
                                                                      "inference.InferenceService")
tap(ok, "two inference servers up")
if not ok:
    finish()


@run
def after_backends():
    # The probe runs every second; the compositing service turns SERVING on its own.
    tap(wait_serving(PC, "compositing.CompositingService", 10),
        "compositing.CompositingService SERVING once a backend is")
    r = comp.InferBatchComposite(req(0), timeout=30)
    imgs = [Image.open(io.BytesIO(b)) for b in r.composited_frames]
    tap(r.success and len(imgs) == 2 and all(i.format == "JPEG" for i in imgs),
        "InferBatchComposite through remote inference: 2 JPEG frames")
    h = comp.Health(cpb.HealthRequest(), timeout=5)
    tap(h.healthy and h.inference_server_healthy, "Health: healthy, backend healthy")


@run
def parity_with_monolithic():
    mono = start("mono", ["--role", "monolithic", "--port", str(PM), "--default-model", "t1",
                          "--audio.encoder_path", ENC])
    try:
        if not wait_serving(PM, ""):
            tap(False, "monolithic reference server starts")
            return
        mch = channel(PM)
        mstub = mch.unary_unary("/monolithic.MonolithicService/InferBatchComposite",
                                request_serializer=lambda m: m.SerializeToString(),
                                response_deserializer=cpb.CompositeBatchResponse.FromString)
        for s, B, pcm in ((0, 10, True), (20, 3, True), (5, 2, False)):
            a = mstub(req(s, B, pcm), timeout=60)
            b = comp.InferBatchComposite(req(s, B, pcm), timeout=60)
            same = len(a.composited_frames) == len(b.composited_frames) == B
            worst = 0.0
            for x, y in zip(a.composited_frames, b.composited_frames):
                ax = np.asarray(Image.open(io.BytesIO(x)), dtype=np.int16)
                by = np.asarray(Image.open(io.BytesIO(y)), dtype=np.int16)
                same = same and ax.shape == by.shape
                if ax.shape == by.shape:
                    worst = max(worst, float(np.abs(ax - by).max()))
            # Same model, encoder, chunking and codec on both sides, so the pixels should be
            # identical; 2 levels allow for a different ONNX Runtime kernel choice between the
            # processes' batch shapes (float rounding before the 8-bit conversion).
            tap(same and worst <= 2, "separated = monolithic (s=%d B=%d %s)" %
                (s, B, "raw_audio" if pcm else "audio_features"), "max diff %s" % worst)
        mch.close()
    finally:
        kill(mono)


def usage(port):
    ch = grpc.insecure_channel("127.0.0.1:%d" % port)
    try:
        st = igrpc.InferenceServiceStub(ch).GetModelStats(ipb.GetModelStatsRequest(model_id="t1"),
                                                          timeout=5)
        return sum(m.stats.usage_count for m in st.models)
    finally:
        ch.close()


@run
def failover():
    global inf1
    total, kill_at, restart_at = 200, 60, 120
    lock = threading.Lock()
    state = {"next": 0, "ok": 0, "bad": [], "after_restart": 0}
    events = {}

    def client():
        while True:
            with lock:
                i = state["next"]
                if i >= total:
                    return
                state["next"] += 1
            try:
                r = comp.InferBatchComposite(req(i % 40, 1), timeout=30)
                good = r.success and len(r.composited_frames) == 1
            except grpc.RpcError as e:
                good = False
                with lock:
                    state["bad"].append("%d:%s:%s" % (i, e.code(), e.details()))
            with lock:
                if good:
                    state["ok"] += 1
                    if "restarted" in events:
                        state["after_restart"] += 1
                if state["ok"] == kill_at and "killed" not in events:
                    events["killed"] = True
                    kill_ev.set()
                if state["ok"] == restart_at and "restarted" not in events:
                    events["restart"] = True
                    restart_ev.set()
                    resumed.clear()
            resumed.wait()

    kill_ev, restart_ev, resumed = threading.Event(), threading.Event(), threading.Event()
    resumed.set()
    ts = [threading.Thread(target=client) for _ in range(2)]
    t0 = time.time()
    for t in ts:
        t.start()
    kill_ev.wait(120)
    kill(inf1)  # SIGKILL while calls are in flight
    restart_ev.wait(120)
    inf1 = start_inference(P1)
    up = wait_serving(P1, "inference.InferenceService")
    # Let the compositing channel reconnect (reconnect backoff capped at 2 s) before the rest.
    time.sleep(2.5)
    u1_before, u2_before = usage(P1), usage(P2)
    with lock:
        events["restarted"] = True
    resumed.set()
    for t in ts:
        t.join(300)
    dt = time.time() - t0
    tap(up, "killed inference server restarted")
    tap(state["ok"] == total and not state["bad"],
        "%d batches, one backend killed and restarted: all succeed (%.1f s)" % (total, dt),
        "ok %d, failures %s" % (state["ok"], state["bad"][:3]))
    d1, d2 = usage(P1) - u1_before, usage(P2) - u2_before
    n = state["after_restart"]
    # One InferBatch call per batch of 1; round_robin alternates, so each backend
    # gets about half; 25% leaves room for calls that overlapped the reconnect.
    tap(n > 0 and d1 + d2 == n and min(d1, d2) >= n // 4,
        "after the restart both backends serve (%d / %d of %d calls)" % (d1, d2, n))


@run
def no_backend_left():
    global inf1, inf2
    kill(inf1)
    kill(inf2)
    t0 = time.time()
    c = code(comp.InferBatchComposite, req(3), timeout=20)
    dt = time.time() - t0
    tap(c == grpc.StatusCode.UNAVAILABLE and dt < 8,
        "every backend killed: UNAVAILABLE (%.2f s)" % dt, "code %s" % c)
    inf2 = start_inference(P2)
    wait_serving(P2, "inference.InferenceService")
    t0 = time.time()
    c = grpc.StatusCode.UNAVAILABLE
    while time.time() - t0 < 10 and c == grpc.StatusCode.UNAVAILABLE:
        c = code(comp.InferBatchComposite, req(3), timeout=20)
        if c != grpc.StatusCode.OK:
            time.sleep(0.3)
    tap(c == grpc.StatusCode.OK, "one backend back: success again (%.1f s)" % (time.time() - t0),
        "code %s" % c)


@run
def raw_audio_forwarded():
    # A compositing server without an audio encoder forwards the PCM (API.md §6 alignment). Its
    # target is a DNS name: localhost may resolve to ::1 too, where nothing listens, and
    # round_robin must use only the address that answers.
    p = start("comp_noenc", ["--role", "compositing", "--port", str(PR), "--default-model", "t1",
                             "--audio.encoder_path", os.path.join(tmp, "missing.onnx"),
                             "--inference_server.url", "dns:///localhost:%d" % P2])
    try:
        if not wait_serving(PR, "compositing.CompositingService", 30):
            tap(False, "compositing without encoder starts SERVING")
            return
        ch = channel(PR)
        st = cgrpc.CompositingServiceStub(ch)
        for s in (0, 12):
            r = st.InferBatchComposite(req(s, 9), timeout=60)
            tap(r.success and len(r.composited_frames) == 9,
                "no local encoder, dns:/// target: raw_audio forwarded (s=%d, B=9: two chunks)"
                % s)
        ch.close()
    finally:
        kill(p)


@run
def lipsync_composite_and_cache():
    r = lsc.InferBatchComposite(lpb.CompositeBatchRequest(
        audio_features=np.frombuffer(FEAT, np.float32), batch_size=3, start_frame_idx=1),
        timeout=60)
    imgs = [Image.open(io.BytesIO(b)) for b in r.composited_frames]
    tap(len(imgs) == 3 and all(i.format == "PNG" for i in imgs),
        "lipsync.LipSyncComposite served on top of remote inference")
    st = comp.GetModelStats(cpb.GetModelStatsRequest(model_id="t1"), timeout=5)
    s = st.models[0].stats
    # Every frame of the 12-frame avatar fits the cache, so each is decoded about once (a few
    # more when two threads miss the same frame at once) and every later use is a hit.
    tap(s.background_cache_frames == N and 0 < s.background_cache_misses <= 2 * N and
        s.background_cache_hits > 200,
        "GetModelStats: background cache %d frames, %d misses, %d hits" %
        (s.background_cache_frames, s.background_cache_misses, s.background_cache_hits))


@run
def sigterm():
    comp_srv.send_signal(signal.SIGTERM)
    try:
        rc = comp_srv.wait(20)
    except subprocess.TimeoutExpired:
        rc = None
    tap(rc == 0, "compositing SIGTERM: exit 0", "rc=%s" % rc)


chan.close()
finish()
