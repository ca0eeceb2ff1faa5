#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# tests/py/test_grpc_monolithic.py: Python grpcio clients against a real `lipsync serve` on a
# free loopback port: every monolithic.MonolithicService RPC and grpc.health.v1, the success
# paths (raw PCM, feature windows, client tensors, server-side avatar, frame looping), every
# error status of API.md 1.6/10 (sizes, batch limits, NaN, unknown/malformed model, garbage
# bytes, wrong wire type, oversized message, cancel, deadline), and a SIGTERM drain that must
# exit 0. Prints TAP lines and "N passed, N failed".
#
# Env: LIPSYNC_BIN (binary), MODELS (generated models), AVATARS (fallback avatar dir).
import io
import json
import os
import signal
import subprocess
import time

from lstest import (BIN, MODELS, all_passed, channel, check, feature_window, finish, free_port,
                    gen_stubs, imports_failed, log_tail, make_avatar, run, serve, started,
                    status_of, stub, tap, tmpdir, wait_serving)

try:
    import grpc
    import numpy as np
    from PIL import Image
except Exception as e:  # Debian's python3 has them; anything else is a setup error
    imports_failed("grpc/numpy/PIL", e)

if not os.access(BIN, os.X_OK):
    print("# %s not built" % BIN)
    tap(False, "binary exists")
    finish()

tmp = tmpdir("lipsync-pytest-")
gen_stubs(tmp, "monolithic")
hpb, hgrpc = stub("health")
mpb, mgrpc = stub("monolithic")

# ---- a small test avatar: 12 frames, the tiny UNet ------------------------------------------
root = os.path.join(tmp, "models_root")
os.makedirs(root)
if not make_avatar(os.path.join(root, "t1"), fallback=True):
    print("# no avatar generator and no demo avatar")
    tap(False, "test avatar")
    finish()
AV = os.path.join(root, "t1")
rects = json.load(open(os.path.join(AV, "crop_rects.json")))
NFRAMES = len(rects)
frame_files = sorted(os.listdir(os.path.join(AV, "frames")))
encoder = os.path.join(MODELS, "audio_encoder_tiny.onnx")
if not os.path.exists(encoder):
    encoder = os.path.join(MODELS, "audio_encoder.onnx")

PORT = free_port()
srv, log = serve(["--role", "monolithic", "--host", "127.0.0.1", "--port", str(PORT),
                  "--models-root", root, "--default-model", "t1", "--audio.encoder_path", encoder,
                  "--server.grace_period_s", "3", "--server.workers", "2"],
                 os.path.join(tmp, "server.log"))
chan = channel(PORT)
health = hgrpc.HealthStub(chan)
mono = mgrpc.MonolithicServiceStub(chan)
SVC = "monolithic.MonolithicService"
started(wait_serving(PORT, proc=srv), "server starts and reports SERVING", log)


def pcm_for(batch, start, seconds=None):
    """Speech-like PCM covering the full API.md 1.5 context of a request."""
    a = max(0, start - 8)
    n = (start + batch + 7 - a) * 640 if seconds is None else int(seconds * 16000)
    t = np.arange(n, dtype=np.float32) / 16000.0
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 3.0 * t)
    return (0.3 * env * np.sin(2 * np.pi * 220.0 * t)).astype(np.float32)


def decode(jpeg):
    return np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB")).astype(np.int16)


def background(i):
    return np.asarray(Image.open(os.path.join(AV, "frames", frame_files[i])).convert("RGB")
                      ).astype(np.int16)


@run
def health_rpcs():
    st = health.Check(hpb.HealthCheckRequest(service=SVC), timeout=5).status
    check("health Check service name SERVING", st == 1, "status %d" % st)
    c, d = status_of(health.Check, hpb.HealthCheckRequest(service="nope.Svc"), timeout=5)
    check("health Check unknown service NOT_FOUND", c == grpc.StatusCode.NOT_FOUND, str(c))
    w = health.Watch(hpb.HealthCheckRequest(service=""), timeout=10)
    first = next(w)
    w.cancel()
    check("health Watch sends the current status first", first.status == 1)
    r = mono.Health(mpb.HealthRequest(), timeout=5)
    check("MonolithicService.Health healthy with 1 loaded model",
          r.healthy and r.loaded_models == 1, str(r))


@run
def list_models():
    r = mono.ListModels(mpb.ListModelsRequest(), timeout=5)
    ids = [(m.model_id, m.loaded, m.gpu_id) for m in r.models]
    check("ListModels lists the avatar as loaded on CPU", ("t1", True, -1) in ids, str(ids))


@run
def infer_raw_audio():
    B, s = 4, 2
    pcm = pcm_for(B, s)
    r = mono.InferBatchComposite(mpb.CompositeBatchRequest(
        model_id="t1", raw_audio=pcm.tobytes(), batch_size=B, start_frame_idx=s, sample_rate=16000),
        timeout=60)
    ok = r.success and len(r.composited_frames) == B and r.error == ""
    check("InferBatchComposite raw_audio returns B frames, success", ok,
          "n=%d success=%s" % (len(r.composited_frames), r.success))
    check("timings filled (inference, composite, audio, total)",
          r.inference_time_ms > 0 and r.composite_time_ms > 0 and r.audio_processing_ms > 0 and
          r.total_time_ms >= r.inference_time_ms and r.gpu_id == -1, str(r)[:0] +
          "inf %.2f comp %.2f aud %.2f tot %.2f" % (r.inference_time_ms, r.composite_time_ms,
                                                     r.audio_processing_ms, r.total_time_ms))
    # Mouth region changed, the rest of the frame did not. Tolerances: JPEG q75 re-encoding of
    # a q90 source moves pixels by a few levels on average (mean |diff| < 4 outside); the feather
    # border and 8x8 JPEG blocks reach past the rect, so 24 px around it are excluded. Inside,
    # the tiny UNet's output is unrelated to the drawn face, so it differs by far more (> 8).
    good = True
    notes = []
    for i, jpg in enumerate(r.composited_frames):
        img = decode(jpg)
        bg = background((s + i) % NFRAMES)
        if img.shape != bg.shape:
            good = False
            notes.append("shape %s vs %s" % (img.shape, bg.shape))
            continue
        x1, y1, x2, y2 = rects[(s + i) % NFRAMES]
        d = np.abs(img - bg).mean(axis=2)
        inside = d[y1:y2, x1:x2].mean()
        mask = np.ones(d.shape, bool)
        mask[max(0, y1 - 24):y2 + 24, max(0, x1 - 24):x2 + 24] = False
        outside = d[mask].mean()
        if not (outside < 4.0 and inside > 8.0):
            good = False
            notes.append("frame %d inside %.2f outside %.2f" % (i, inside, outside))
    check("JPEGs decode at avatar size; mouth rect changed, rest unchanged", good,
          "; ".join(notes))


FEAT = feature_window()


@run
def infer_features_and_loop():
    req = dict(model_id="t1", audio_features=FEAT.tobytes(), batch_size=2)
    a = mono.InferBatchComposite(mpb.CompositeBatchRequest(start_frame_idx=1, **req), timeout=60)
    b = mono.InferBatchComposite(mpb.CompositeBatchRequest(start_frame_idx=1 + NFRAMES, **req),
                                 timeout=60)
    check("audio_features (one window) works, audio_processing_ms is 0",
          a.success and len(a.composited_frames) == 2 and a.audio_processing_ms == 0)
    check("start_frame_idx loops over the avatar frames (s and s+N give identical frames)",
          list(a.composited_frames) == list(b.composited_frames))
    per = np.tile(FEAT, 3)
    c = mono.InferBatchComposite(mpb.CompositeBatchRequest(
        model_id="", audio_features=per.tobytes(), batch_size=3), timeout=60)
    check("audio_features one window per frame, empty model_id uses the default",
          c.success and len(c.composited_frames) == 3)


@run
def infer_client_visual():
    B = 2
    vis = np.random.RandomState(1).rand(B, 6, 320, 320).astype(np.float32)
    r = mono.InferBatchComposite(mpb.CompositeBatchRequest(
        model_id="t1", visual_frames=vis.tobytes(), audio_features=FEAT.tobytes(), batch_size=B),
        timeout=60)
    check("client visual_frames tensors accepted", r.success and len(r.composited_frames) == B)
    # 4,000 of the 15,360 context samples: shorter than the context but longer than one mel
    # window (3,000 samples), which the audio front end needs to produce any row.
    short = pcm_for(B, 20)[:4000]
    r = mono.InferBatchComposite(mpb.CompositeBatchRequest(
        model_id="t1", raw_audio=short.tobytes(), batch_size=B, start_frame_idx=20), timeout=60)
    check("truncated raw_audio is allowed (missing context = zero features)",
          r.success and len(r.composited_frames) == B)


def expect(name, code, **fields):
    c, d = status_of(mono.InferBatchComposite, mpb.CompositeBatchRequest(**fields), timeout=30)
    check("%s -> %s" % (name, code.name), c == code and len(d) > 0, "%s: %s" % (c, d))
    return d


@run
def errors():
    I, NF, FP = (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
                 grpc.StatusCode.FAILED_PRECONDITION)
    f = FEAT.tobytes()
    d = expect("batch_size 0", I, model_id="t1", audio_features=f, batch_size=0)
    check("error text names the field and the values", "batch_size" in d and "0" in d, d)
    expect("batch_size 33", I, model_id="t1", audio_features=f, batch_size=33)
    expect("visual_frames wrong size", I, model_id="t1", audio_features=f, batch_size=1,
           visual_frames=b"\0" * 100)
    expect("raw_audio not a multiple of 4", I, model_id="t1", raw_audio=b"\0" * 7, batch_size=1)
    expect("audio_features wrong size", I, model_id="t1", audio_features=f[:100], batch_size=1)
    expect("no audio at all", I, model_id="t1", batch_size=1)
    expect("sample_rate 8000", I, model_id="t1", audio_features=f, batch_size=1, sample_rate=8000)
    expect("unknown model", NF, model_id="nobody", audio_features=f, batch_size=1)
    expect("malformed model id", I, model_id="../etc", audio_features=f, batch_size=1)
    expect("negative start_frame_idx", I, model_id="t1", audio_features=f, batch_size=1,
           start_frame_idx=-1)
    nan = np.zeros(640 * 16, np.float32)
    nan[123] = np.nan
    expect("NaN in raw_audio", I, model_id="t1", raw_audio=nan.tobytes(), batch_size=1)
    inf = FEAT.copy()
    inf[5] = np.inf
    expect("Inf in audio_features", I, model_id="t1", audio_features=inf.tobytes(), batch_size=1)
    # Order of checks (1.6): batch before model lookup; model lookup before values.
    expect("batch 0 + unknown model reports the batch", I, model_id="nobody", audio_features=f,
           batch_size=0)
    expect("unknown model + NaN reports the model", NF, model_id="nobody",
           raw_audio=nan.tobytes(), batch_size=1)
    # Raw wire-level abuse.
    raw = chan.unary_unary("/%s/InferBatchComposite" % SVC)
    c, d = status_of(raw, b"\xff\xff\xff\xff\x0f garbage", timeout=10)
    check("garbage bytes -> INVALID_ARGUMENT", c == I, "%s %s" % (c, d))
    # field 5 (batch_size, varint) sent as length-delimited: the wrong wire type.
    c, d = status_of(raw, b"\x2a\x02ab", timeout=10)
    check("wrong wire type -> INVALID_ARGUMENT", c == I, "%s %s" % (c, d))
    c, d = status_of(raw, b"\0" * ((100 << 20) + 16), timeout=60)
    check("message over 100 MiB -> RESOURCE_EXHAUSTED", c == grpc.StatusCode.RESOURCE_EXHAUSTED,
          "%s %s" % (c, d))
    c, d = status_of(chan.unary_unary("/lipsyncsrv.LipSyncService/Generate"), b"", timeout=10)
    check("unknown path -> UNIMPLEMENTED", c == grpc.StatusCode.UNIMPLEMENTED, str(c))
    # gzip-compressed request is accepted.
    r = mono.InferBatchComposite(mpb.CompositeBatchRequest(model_id="t1", audio_features=f,
                                                           batch_size=1),
                                 timeout=30, compression=grpc.Compression.Gzip)
    check("gzip-compressed request accepted", r.success and len(r.composited_frames) == 1)


@run
def cancel_and_deadline():
    B = 32
    pcm = pcm_for(B, 0)
    req = mpb.CompositeBatchRequest(model_id="t1", raw_audio=pcm.tobytes(), batch_size=B)
    fut = mono.InferBatchComposite.future(req, timeout=60)
    time.sleep(0.05)
    fut.cancel()
    check("client cancel mid-call", fut.cancelled())
    c, d = status_of(mono.InferBatchComposite, req, timeout=0.02)
    check("deadline -> DEADLINE_EXCEEDED", c == grpc.StatusCode.DEADLINE_EXCEEDED, str(c))
    time.sleep(0.5)
    r = mono.InferBatchComposite(mpb.CompositeBatchRequest(model_id="t1",
                                                           audio_features=FEAT.tobytes(),
                                                           batch_size=1), timeout=60)
    check("server still serves after cancel and deadline", r.success)


@run
def management():
    r = mono.UnloadModel(mpb.UnloadModelRequest(model_id="t1"), timeout=10)
    lm = mono.ListModels(mpb.ListModelsRequest(), timeout=5)
    check("UnloadModel succeeds and the model shows unloaded",
          r.success and [m.loaded for m in lm.models if m.model_id == "t1"] == [False])
    r2 = mono.UnloadModel(mpb.UnloadModelRequest(model_id="t1"), timeout=10)
    check("UnloadModel of a model not loaded succeeds", r2.success)
    b = mono.InferBatchComposite(mpb.CompositeBatchRequest(model_id="t1",
                                                           audio_features=FEAT.tobytes(),
                                                           batch_size=1), timeout=60)
    check("auto-load on first use: model_loaded and its load time reported",
          b.success and b.model_loaded and b.model_load_time_ms > 0)
    l1 = mono.LoadModel(mpb.LoadModelRequest(model_id="t1"), timeout=30)
    check("LoadModel of a loaded model succeeds with load_time_ms 0",
          l1.success and l1.load_time_ms == 0 and l1.gpu_id == -1, str(l1))
    c, _ = status_of(mono.LoadModel, mpb.LoadModelRequest(model_id="nobody"), timeout=10)
    check("LoadModel unknown -> NOT_FOUND", c == grpc.StatusCode.NOT_FOUND, str(c))
    c, _ = status_of(mono.LoadModel, mpb.LoadModelRequest(model_id="t1", preferred_gpu=7),
                   timeout=10)
    check("LoadModel preferred_gpu out of range -> INVALID_ARGUMENT",
          c == grpc.StatusCode.INVALID_ARGUMENT, str(c))
    c, _ = status_of(mono.UnloadModel, mpb.UnloadModelRequest(model_id="nobody"), timeout=10)
    check("UnloadModel unknown -> NOT_FOUND", c == grpc.StatusCode.NOT_FOUND, str(c))
    st = mono.GetModelStats(mpb.GetModelStatsRequest(), timeout=5)
    m = [x for x in st.models if x.model_id == "t1"]
    ok = (len(m) == 1 and m[0].loaded and m[0].request_count >= 5 and m[0].avg_inference_ms > 0
          and abs(m[0].last_used_timestamp - time.time()) < 120)
    check("GetModelStats counts calls, time and last use", ok, str(st))


@run
def shutdown():
    w = health.Watch(hpb.HealthCheckRequest(service=SVC), timeout=20)
    first = next(w)
    srv.send_signal(signal.SIGTERM)
    seen = [first.status]
    try:
        for msg in w:
            seen.append(msg.status)
    except grpc.RpcError:
        pass
    check("Watch sees NOT_SERVING on shutdown", seen[0] == 1 and 2 in seen, str(seen))
    try:
        rc = srv.wait(timeout=20)
    except subprocess.TimeoutExpired:
        srv.kill()
        rc = "timeout"
    check("SIGTERM: server drains and exits 0", rc == 0, "rc=%s" % rc)


chan.close()
if not all_passed():
    log_tail(log, 30, "server log (tail)")
finish()
