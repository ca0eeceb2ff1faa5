#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# tests/py/test_security.py: TLS, API-key authentication with tenant scoping, rate limits and
# the audit log of a real `lipsync serve` on free loopback ports, driven by Python grpcio and by
# `lipsync client`. Certificates come from a CA made at test time with openssl. Prints TAP lines
# and "N passed, N failed".
#
# Env: LIPSYNC_BIN (binary), MODELS (generated models), AVATARS (fallback avatar dir).
import hashlib
import json
import os
import shutil
import signal
import subprocess
import time

from lstest import (BIN, MODELS, channel, check, finish, free_port, gen_stubs, imports_failed,
                    log_tail, make_avatar, require, run, serve, status_of, stop, stub, tap,
                    tmpdir, wait_serving, wait_until)

try:
    import grpc
    import numpy as np
except Exception as e:  # Debian's python3 has them; anything else is a setup error
    imports_failed("grpc/numpy", e)

require(os.access(BIN, os.X_OK), "binary exists", "%s not built" % BIN)
require(shutil.which("openssl"), "openssl exists", "openssl not installed")

tmp = tmpdir("lipsync-sec-")  # kept after a failure: logs, keys, audit
PROTOS = ("compositing", "health", "lipsync_v1", "monolithic", "optimized_lipsyncsrv")
gen_stubs(tmp, *PROTOS)
(cpb, cgrpc), (hpb, hgrpc), (v1pb, v1grpc), (mpb, mgrpc), (opb, ogrpc) = map(stub, PROTOS)

# ---- two small test avatars (t1, t2): 12 frames, the tiny UNet --------------------------------
root = os.path.join(tmp, "models_root")
os.makedirs(root)
require(all(make_avatar(os.path.join(root, av), fallback=True) for av in ("t1", "t2")),
        "test avatars", "no avatar generator and no demo avatar")
encoder = os.path.join(MODELS, "audio_encoder_tiny.onnx")
if not os.path.exists(encoder):
    encoder = os.path.join(MODELS, "audio_encoder.onnx")

# ---- certificates: a CA, a server certificate for 127.0.0.1/localhost, a client certificate,
# and an unrelated CA --------------------------------------------------------------------------
pki = os.path.join(tmp, "pki")
os.makedirs(pki)


def ossl(*args):
    subprocess.check_call(["openssl"] + list(args), cwd=pki, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)


def make_ca(name):
    ossl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=" + name,
         "-keyout", name + ".key", "-out", name + ".pem")


def make_cert(name, ca, ext):
    ossl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=" + name, "-keyout",
         name + ".key", "-out", name + ".csr")
    with open(os.path.join(pki, name + ".ext"), "w") as f:
        f.write(ext)
    ossl("x509", "-req", "-in", name + ".csr", "-CA", ca + ".pem", "-CAkey", ca + ".key",
         "-CAcreateserial", "-days", "2", "-extfile", name + ".ext", "-out", name + ".pem")


make_ca("ca")
make_ca("otherca")
make_cert("server", "ca", "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
          "extendedKeyUsage=serverAuth\n")
make_cert("client", "ca", "extendedKeyUsage=clientAuth\n")


def pem(name):
    with open(os.path.join(pki, name), "rb") as f:
        return f.read()


def P(name):
    return os.path.join(pki, name)


# ---- helpers ----------------------------------------------------------------------------------
def secure_channel(port, ca=None, cert=None, key=None):
    return channel(port, creds=grpc.ssl_channel_credentials(
        root_certificates=pem(ca) if ca else None, private_key=pem(key) if key else None,
        certificate_chain=pem(cert) if cert else None))


def start_server(name, extra, chan_fn=None):
    """Starts `lipsync serve` with extra flags; waits until health Check over chan_fn(port)
    (plaintext without it) answers SERVING. Returns (process, port, log path, ok)."""
    port = free_port()
    logp = os.path.join(tmp, name + ".log")
    p, log = serve(["--role", "monolithic", "--host", "127.0.0.1", "--port", str(port),
                    "--models-root", root, "--default-model", "t1", "--audio.encoder_path",
                    encoder, "--server.grace_period_s", "2", "--server.workers", "2"] + extra,
                   logp)
    ok = wait_serving(port, proc=p, channel_fn=chan_fn)
    if not ok:
        log_tail(log, title="%s log" % name)
    return p, port, logp, ok


def health_code(ch):
    return status_of(hgrpc.HealthStub(ch).Check, hpb.HealthCheckRequest(service=""), timeout=5)


# ---- TLS ----------------------------------------------------------------------------------------
@run
def tls():
    p, port, _, ok = start_server(
        "tls", ["--server.tls_cert", P("server.pem"), "--server.tls_key", P("server.key")],
        lambda port: secure_channel(port, "ca.pem"))
    check("TLS server starts and answers over TLS with the right CA", ok)
    if not ok:
        return
    c, d = health_code(channel(port))
    check("TLS: plaintext client refused (UNAVAILABLE)", c == grpc.StatusCode.UNAVAILABLE,
          "%s %s" % (c, d))
    c, d = health_code(secure_channel(port, "otherca.pem"))
    check("TLS: client trusting another CA refused (UNAVAILABLE)",
          c == grpc.StatusCode.UNAVAILABLE, "%s %s" % (c, d))
    ch = secure_channel(port, "ca.pem")
    r = mgrpc.MonolithicServiceStub(ch).ListModels(mpb.ListModelsRequest(), timeout=10)
    check("TLS: right CA served (ListModels)", "t1" in [m.model_id for m in r.models], str(r))
    ch.close()
    # The C client: --tls-ca works, plaintext against the TLS port fails.
    r1 = subprocess.run([BIN, "client", "health", "--port", str(port), "--tls-ca", P("ca.pem"),
                         "--timeout", "5000"], capture_output=True, text=True)
    check("lipsync client --tls-ca: health over TLS exits 0", r1.returncode == 0,
          r1.stdout + r1.stderr)
    r2 = subprocess.run([BIN, "client", "health", "--port", str(port), "--timeout", "3000"],
                        capture_output=True, text=True)
    check("lipsync client without --tls-ca against TLS fails", r2.returncode == 1,
          "rc %d %s" % (r2.returncode, r2.stderr))
    check("TLS server drains on SIGTERM and exits 0", stop(p, 20) == 0)


@run
def mtls():
    gw_port = free_port()
    p, port, _, ok = start_server(
        "mtls", ["--server.tls_cert", P("server.pem"), "--server.tls_key", P("server.key"),
                 "--server.tls_client_ca", P("ca.pem"), "--gateway.port", str(gw_port),
                 "--gateway.tls_ca", P("ca.pem"), "--gateway.tls_cert", P("client.pem"),
                 "--gateway.tls_key", P("client.key")],
        lambda port: secure_channel(port, "ca.pem", "client.pem", "client.key"))
    check("mTLS server starts and serves a client with a certificate of its CA", ok)
    if not ok:
        return
    c, d = health_code(secure_channel(port, "ca.pem"))
    check("mTLS: client without a certificate refused (UNAVAILABLE)",
          c == grpc.StatusCode.UNAVAILABLE, "%s %s" % (c, d))
    c, d = health_code(secure_channel(port, "ca.pem", "server.pem", "server.key"))
    # The server certificate is signed by the same CA but lacks clientAuth usage.
    check("mTLS: certificate without clientAuth usage refused", c != grpc.StatusCode.OK,
          "%s %s" % (c, d))
    r = subprocess.run([BIN, "client", "health", "--port", str(port), "--tls-ca", P("ca.pem"),
                        "--tls-cert", P("client.pem"), "--tls-key", P("client.key"),
                        "--timeout", "5000"], capture_output=True, text=True)
    check("lipsync client --tls-cert/--tls-key: health over mTLS exits 0", r.returncode == 0,
          r.stdout + r.stderr)
    # The browser gateway is a gRPC client of this mTLS port: its sessions list avatars and
    # stream frames through it.
    import websocket
    ws = websocket.create_connection("ws://127.0.0.1:%d/ws" % gw_port, timeout=20)
    ws.send(json.dumps({"type": "list"}))
    m = json.loads(ws.recv())
    check("gateway over mTLS: list answers the avatars",
          m.get("type") == "avatars" and "t1" in [a["id"] for a in m.get("avatars", [])], str(m))
    ws.send(json.dumps({"type": "open"}))
    frames, t_end = 0, time.time() + 20
    while frames < 5 and time.time() < t_end:
        op, data = ws.recv_data()
        if op == websocket.ABNF.OPCODE_BINARY and data[:4] == b"LSF1":
            frames += 1
        elif op == websocket.ABNF.OPCODE_TEXT and json.loads(data.decode()).get("type") == "error":
            break
    ws.close()
    check("gateway over mTLS: a stream delivers frames", frames >= 5, "%d frames" % frames)
    stop(p, 20)


@run
def tls_bad_config():
    r = subprocess.run([BIN, "serve", "--port", str(free_port()), "--models-root", root,
                        "--server.tls_cert", P("server.pem"), "--server.tls_key",
                        P("missing.key")], capture_output=True, text=True, timeout=60)
    check("TLS: a missing key file stops start-up with a message naming it",
          r.returncode != 0 and "missing.key" in r.stderr, "rc %d %s" % (r.returncode, r.stderr))
    r = subprocess.run([BIN, "serve", "--port", str(free_port()), "--models-root", root,
                        "--server.tls_cert", P("server.pem"), "--server.tls_key",
                        P("server.key"), "--gateway.port", str(free_port())],
                       capture_output=True, text=True, timeout=60)
    check("TLS server with the gateway on but no gateway.tls_ca: refused, naming the key",
          r.returncode != 0 and "gateway.tls_ca" in r.stderr, "rc %d %s" % (r.returncode, r.stderr))
    r = subprocess.run([BIN, "serve", "--port", str(free_port()), "--models-root", root,
                        "--server.tls_cert", P("server.pem"), "--server.tls_key",
                        P("server.key"), "--gateway.port", str(free_port()),
                        "--gateway.tls_ca", P("nope.pem")],
                       capture_output=True, text=True, timeout=60)
    check("gateway.tls_ca that does not exist: start-up fails naming the file",
          r.returncode != 0 and "nope.pem" in r.stderr, "rc %d %s" % (r.returncode, r.stderr))


# ---- API keys, tenants, limits, audit -----------------------------------------------------------
SECRETS = {"acme": "acme-secret-0123456789", "beta": "beta-secret-9876543210",
           "gamma": "gamma-secret-5555", "ops": "ops-admin-secret-42", "newkey": "new-secret-7"}


def sha(k):
    return hashlib.sha256(k.encode()).hexdigest()


def keys_doc(ids):
    entries = {
        "acme": {"id": "acme", "sha256": sha(SECRETS["acme"]), "role": "client",
                 "avatars": ["t1"]},
        # 4 frames/s with a 4-frame bucket: a batch of 16 still runs and leaves debt.
        "beta": {"id": "beta", "sha256": sha(SECRETS["beta"]), "role": "client",
                 "avatars": ["t2"], "frames_per_second": 4, "burst_frames": 4},
        "gamma": {"id": "gamma", "sha256": sha(SECRETS["gamma"]), "avatars": ["t1"],
                  "max_concurrent": 1},
        "ops": {"id": "ops", "sha256": sha(SECRETS["ops"]), "role": "admin", "avatars": "*",
                "description": "operators"},
        "newkey": {"id": "newkey", "sha256": sha(SECRETS["newkey"]), "avatars": ["t1", "t2"]},
    }
    return json.dumps({"keys": [entries[i] for i in ids]})


keys_path = os.path.join(tmp, "keys.json")
audit_path = os.path.join(tmp, "audit.log")
with open(keys_path, "w") as f:
    f.write(keys_doc(["acme", "beta", "gamma", "ops"]))


def md(who):
    return [("authorization", "Bearer " + SECRETS[who])]


def pcm_for(batch, start):
    """Speech-like PCM covering the API.md 1.5 context of a request."""
    a = max(0, start - 8)
    n = (start + batch + 7 - a) * 640
    t = np.arange(n, dtype=np.float32) / 16000.0
    return (0.3 * np.sin(2 * np.pi * 220.0 * t)).astype(np.float32)


def infer_req(model, B=8):
    return mpb.CompositeBatchRequest(model_id=model, raw_audio=pcm_for(B, 0).tobytes(),
                                     batch_size=B, start_frame_idx=0, sample_rate=16000)


def call(fn, req, who=None, timeout=60):
    """(code, details, response, trailing metadata dict)."""
    try:
        r, c = fn.with_call(req, metadata=md(who) if who else None, timeout=timeout)
        return grpc.StatusCode.OK, "", r, dict(c.trailing_metadata() or ())
    except grpc.RpcError as e:
        return e.code(), e.details(), None, dict(e.trailing_metadata() or ())


def no_secret(text):
    return not any(v in text for v in SECRETS.values())


@run
def auth():
    p, port, logp, ok = start_server(
        "auth", ["--auth.keys_file", keys_path, "--audit.enabled", "true", "--audit.file",
                 audit_path])
    check("auth server starts; grpc.health.v1 answers without a key", ok)
    if not ok:
        return
    ch = channel(port)
    mono = mgrpc.MonolithicServiceStub(ch)
    opt = ogrpc.OptimizedLipSyncServiceStub(ch)
    comp = cgrpc.CompositingServiceStub(ch)

    c, d, _, _ = call(mono.ListModels, mpb.ListModelsRequest())
    check("no key: UNAUTHENTICATED", c == grpc.StatusCode.UNAUTHENTICATED and
          "authorization" in d, "%s %s" % (c, d))
    c, d = status_of(mono.ListModels, mpb.ListModelsRequest(), timeout=10,
                     metadata=[("authorization", "Bearer not-a-key-123")])
    check("unknown key: UNAUTHENTICATED, key not echoed",
          c == grpc.StatusCode.UNAUTHENTICATED and "not-a-key-123" not in d, "%s %s" % (c, d))
    c, d, r, _ = call(mono.ListModels, mpb.ListModelsRequest(), "acme")
    check("client key: ListModels lists only its own avatar t1",
          c == grpc.StatusCode.OK and [m.model_id for m in r.models] == ["t1"],
          "%s %s %s" % (c, d, r and [m.model_id for m in r.models]))
    c, d, r, _ = call(mono.ListModels, mpb.ListModelsRequest(), "ops")
    check("admin key with *: ListModels lists t1 and t2",
          c == grpc.StatusCode.OK and {"t1", "t2"} <= {m.model_id for m in r.models},
          "%s %s" % (c, d))
    c, d, r, _ = call(comp.ListModels, cpb.ListModelsRequest(), "beta")
    check("beta: compositing ListModels lists only t2 (paths of others not shown)",
          c == grpc.StatusCode.OK and [m.model_id for m in r.models] == ["t2"],
          "%s %s %s" % (c, d, r and [m.model_id for m in r.models]))
    c, d, r, _ = call(opt.ListModels,
                      opb.ListModelsRequest(), "acme")
    check("acme: optimized ListModels names only t1 and counts 1 (or none when not loaded)",
          c == grpc.StatusCode.OK and set(r.loaded_models) <= {"t1"} and
          r.count == len(r.loaded_models), "%s %s %s" % (c, d, r))
    c, d, r, _ = call(v1grpc.LipSyncStub(ch).ListAvatars, v1pb.ListAvatarsRequest(), "beta")
    check("beta: lipsync.v1 ListAvatars lists only t2",
          c == grpc.StatusCode.OK and [a.id for a in r.avatars] == ["t2"],
          "%s %s %s" % (c, d, r and [a.id for a in r.avatars]))

    # Tenant scoping.
    c, d, r, _ = call(mono.InferBatchComposite, infer_req("t1"), "acme")
    check("acme infers on its avatar t1 (8 frames)",
          c == grpc.StatusCode.OK and len(r.composited_frames) == 8, "%s %s" % (c, d))
    c, d, r, _ = call(mono.InferBatchComposite, infer_req("", 2), "acme")
    check("acme: empty model_id is the default avatar t1, allowed", c == grpc.StatusCode.OK,
          "%s %s" % (c, d))
    c, d, _, _ = call(mono.InferBatchComposite, infer_req("t2"), "acme")
    check("acme on t2: PERMISSION_DENIED naming the key id, never the key",
          c == grpc.StatusCode.PERMISSION_DENIED and "'acme'" in d and "t2" in d and
          no_secret(d), "%s %s" % (c, d))
    c, d, _, _ = call(comp.GetModelStats, cpb.GetModelStatsRequest(model_id="t2"), "acme")
    check("acme GetModelStats t2: PERMISSION_DENIED", c == grpc.StatusCode.PERMISSION_DENIED,
          "%s %s" % (c, d))
    c, d, _, _ = call(comp.GetModelStats, cpb.GetModelStatsRequest(model_id=""), "acme")
    check("acme GetModelStats of every avatar: PERMISSION_DENIED",
          c == grpc.StatusCode.PERMISSION_DENIED, "%s %s" % (c, d))
    c, d, _, _ = call(mono.GetModelStats, mpb.GetModelStatsRequest(), "acme")
    check("acme monolithic GetModelStats (every avatar): PERMISSION_DENIED",
          c == grpc.StatusCode.PERMISSION_DENIED, "%s %s" % (c, d))
    c, d, _, _ = call(mono.GetModelStats, mpb.GetModelStatsRequest(), "ops")
    check("admin with * : monolithic GetModelStats OK", c == grpc.StatusCode.OK, "%s %s" % (c, d))
    c, d, _, _ = call(comp.GetModelStats, cpb.GetModelStatsRequest(model_id="t1"), "acme")
    check("acme GetModelStats t1: OK", c == grpc.StatusCode.OK, "%s %s" % (c, d))
    c, d, _, _ = call(opt.GetModelMetadata, opb.GetModelMetadataRequest(model_name="t2"), "acme")
    check("acme optimized GetModelMetadata t2: PERMISSION_DENIED",
          c == grpc.StatusCode.PERMISSION_DENIED, "%s %s" % (c, d))
    # A field repeated on the wire: protobuf keeps the last value, and so must the check.
    raw = (cpb.GetModelStatsRequest(model_id="t1").SerializeToString() +
           cpb.GetModelStatsRequest(model_id="t2").SerializeToString())
    rawcall = ch.unary_unary("/compositing.CompositingService/GetModelStats")
    c, d, _, _ = call(rawcall, raw, "acme")
    check("acme: model_id t1 then t2 on the wire is t2: PERMISSION_DENIED",
          c == grpc.StatusCode.PERMISSION_DENIED, "%s %s" % (c, d))
    # Every message of a stream is checked.
    reqs = iter([opb.OptimizedInferenceRequest(model_name="t1", frame_id=0),
                 opb.OptimizedInferenceRequest(model_name="t2", frame_id=1)])
    got, code = [], None
    try:
        for m in opt.StreamInference(reqs, metadata=md("acme"), timeout=60):
            got.append(m)
    except grpc.RpcError as e:
        code = e.code()
    check("acme StreamInference: t1 answered, then t2 ends the stream PERMISSION_DENIED",
          len(got) == 1 and code == grpc.StatusCode.PERMISSION_DENIED,
          "%d %s" % (len(got), code))

    # lipsync.v1 Stream (a session stream): the open message is checked, and so is a later one.
    v1 = v1grpc.LipSyncStub(ch)

    def v1_stream(msgs):
        def gen():
            for m in msgs:
                yield m
            time.sleep(1.0)  # keep the stream open while the server reads what was sent
        out, code = [], grpc.StatusCode.OK
        try:
            for r in v1.Stream(gen(), metadata=md("acme"), timeout=30):
                out.append(r)
        except grpc.RpcError as e:
            code = e.code()
        return out, code

    out, code = v1_stream([v1pb.StreamRequest(open=v1pb.StreamOpen(avatar_id="t2",
                                                                   disable_idle=True))])
    if code == grpc.StatusCode.UNIMPLEMENTED:
        tap(True, "v1 Stream scoping", skip="lipsync.v1 not served by this build")
    else:
        check("acme v1 Stream open on t2: PERMISSION_DENIED before any message",
              code == grpc.StatusCode.PERMISSION_DENIED and not out, "%s %d" % (code, len(out)))
        out, code = v1_stream([
            v1pb.StreamRequest(open=v1pb.StreamOpen(avatar_id="t1", disable_idle=True)),
            v1pb.StreamRequest(open=v1pb.StreamOpen(avatar_id="t2"))])
        check("acme v1 Stream: opened on t1, a later open naming t2 ends it PERMISSION_DENIED",
              code == grpc.StatusCode.PERMISSION_DENIED and len(out) >= 1 and
              out[0].WhichOneof("msg") == "event" and
              out[0].event.kind == v1pb.StreamEvent.KIND_OPENED, "%s %s" % (code, out[:1]))

    # Admin-only RPCs.
    c, d, _, _ = call(mono.LoadModel, mpb.LoadModelRequest(model_id="t1"), "acme")
    check("client key LoadModel: PERMISSION_DENIED (admin only)",
          c == grpc.StatusCode.PERMISSION_DENIED and "admin" in d, "%s %s" % (c, d))
    c, d, _, _ = call(opt.LoadPackage, opb.LoadPackageRequest(package_name="t2",
                                                              package_dir="t2"), "acme")
    check("client key LoadPackage: PERMISSION_DENIED", c == grpc.StatusCode.PERMISSION_DENIED,
          "%s %s" % (c, d))
    c, d, _, _ = call(mono.LoadModel, mpb.LoadModelRequest(model_id="t2"), "ops")
    check("admin key LoadModel t2: OK", c == grpc.StatusCode.OK, "%s %s" % (c, d))
    c, d, _, _ = call(mono.UnloadModel, mpb.UnloadModelRequest(model_id="t2"), "ops")
    check("admin key UnloadModel t2: OK", c == grpc.StatusCode.OK, "%s %s" % (c, d))

    # Calls in progress per key: gamma may hold one; a stream that is open holds it.
    gate = __import__("threading").Event()

    def slow_reqs():
        gate.wait(20)
        return
        yield  # noqa: an empty generator that blocks until released

    fut = opt.StreamInference(slow_reqs(), metadata=md("gamma"), timeout=30)
    time.sleep(0.5)
    c, d, _, tm = call(mono.ListModels, mpb.ListModelsRequest(), "gamma")
    check("gamma (max_concurrent 1) with a stream open: RESOURCE_EXHAUSTED with retry-after-ms",
          c == grpc.StatusCode.RESOURCE_EXHAUSTED and "retry-after-ms" in tm,
          "%s %s %s" % (c, d, tm))
    gate.set()
    try:
        for _ in fut:
            pass
    except grpc.RpcError:
        pass
    time.sleep(0.3)
    c, d, _, _ = call(mono.ListModels, mpb.ListModelsRequest(), "gamma")
    check("gamma after its stream ended: OK", c == grpc.StatusCode.OK, "%s %s" % (c, d))

    # Frame rate: beta has 4 frames/s and a 4-frame bucket.
    call(mono.LoadModel, mpb.LoadModelRequest(model_id="t2"), "ops")  # no load inside the timing
    req2 = infer_req("t2")
    t0 = time.time()
    c1, d1, _, _ = call(mono.InferBatchComposite, infer_req("t2", 16), "beta")
    c3, d3, _, tm = call(mono.InferBatchComposite, req2, "beta")
    T = time.time() - t0
    retry = int(tm.get("retry-after-ms", "0"))
    # The 16 frames are charged when the response leaves: 4 - 16 = 12 frames of debt, less the
    # 4/s refill from the first call's start to the second's (T s, which bounds it): the hint
    # is (12 - 4 Ts) / 4 s + 1 ms for the server's interval Ts <= T: at most 3001 ms and at
    # least 3001 - 1000 T (5 ms of slack for the hint's rounding to whole ms).
    name = ("beta: a batch of 16 over a 4-frame bucket runs; the next call is "
            "RESOURCE_EXHAUSTED with retry-after-ms")
    if c1 == grpc.StatusCode.OK and c3 == grpc.StatusCode.OK and T >= 2.5:
        # A machine this loaded refills the debt while the call runs; that is the bucket
        # working, not a failure, but then this case proves nothing.
        tap(True, name, skip="the batch took %.1f s on a loaded machine" % T)
    else:
        check(name, c1 == grpc.StatusCode.OK and c3 == grpc.StatusCode.RESOURCE_EXHAUSTED and
              max(1, 3001 - 1000 * T - 5) <= retry <= 3001 and "retry after" in d3,
              "%s %s | %s %s %s T=%.2f" % (c1, d1, c3, d3, tm, T))
    c, d, _, _ = call(mono.ListModels, mpb.ListModelsRequest(), "beta")
    check("beta: calls that make no frames are not rate limited", c == grpc.StatusCode.OK,
          "%s %s" % (c, d))
    if retry:
        time.sleep(retry / 1000.0 + 0.1)
    c, d, _, tm = call(mono.InferBatchComposite, infer_req("t2", 1), "beta")
    if not retry and c == grpc.StatusCode.RESOURCE_EXHAUSTED:
        # The skipped case above: the second batch ran too and left its own debt, so this is
        # the first refusal; its hint must be enough.
        time.sleep(int(tm.get("retry-after-ms", "0")) / 1000.0 + 0.1)
        c, d, _, _ = call(mono.InferBatchComposite, infer_req("t2", 1), "beta")
    check("beta: served again after retry-after-ms", c == grpc.StatusCode.OK, "%s %s" % (c, d))

    # lipsync client with a key file.
    kf = os.path.join(tmp, "acme.key")
    with open(kf, "w") as f:
        f.write(SECRETS["acme"] + "\n")
    r = subprocess.run([BIN, "client", "list", "--port", str(port), "--api-key-file", kf,
                        "--timeout", "10000"], capture_output=True, text=True)
    check("lipsync client --api-key-file: list exits 0", r.returncode == 0, r.stderr)
    r = subprocess.run([BIN, "client", "list", "--port", str(port), "--timeout", "10000"],
                       capture_output=True, text=True)
    check("lipsync client without a key: exits 1 with UNAUTHENTICATED",
          r.returncode == 1 and "UNAUTHENTICATED" in r.stderr, r.stderr)

    # Reload on SIGHUP: acme removed, newkey added.
    with open(keys_path, "w") as f:
        f.write(keys_doc(["beta", "gamma", "ops", "newkey"]))
    p.send_signal(signal.SIGHUP)
    ok = wait_until(lambda: call(mono.ListModels, mpb.ListModelsRequest(), "newkey")[0] ==
                    grpc.StatusCode.OK, 10)
    check("SIGHUP: a new key works without a restart", ok, "newkey not accepted within 10 s")
    c, d, _, _ = call(mono.ListModels, mpb.ListModelsRequest(), "acme")
    check("SIGHUP: a removed key is refused", c == grpc.StatusCode.UNAUTHENTICATED, str(c))
    with open(keys_path, "w") as f:
        f.write('{"keys": [{"id": "x", "sha256": "nothex"}]}')
    p.send_signal(signal.SIGHUP)
    time.sleep(1.0)
    c, d, _, _ = call(mono.ListModels, mpb.ListModelsRequest(), "newkey")
    check("SIGHUP with a broken keys file keeps the previous keys", c == grpc.StatusCode.OK,
          str(c))
    check("server still running after SIGHUPs", p.poll() is None)
    ch.close()
    check("auth server drains on SIGTERM and exits 0", stop(p, 20) == 0)
    log = open(logp).read()
    check("broken keys file reported in the log", "keys not reloaded" in log, log[-2000:])

    # The audit log.
    lines = [json.loads(l) for l in open(audit_path) if l.strip()]
    text = open(audit_path).read()
    check("audit: every line is JSON with the documented fields",
          lines and all(set(("time", "key_id", "avatar", "rpc", "frames", "status",
                             "latency_ms")) <= set(l) for l in lines), text[:500])
    check("audit: never a key", no_secret(text) and "not-a-key-123" not in text)
    inf = [l for l in lines if l["key_id"] == "acme" and l["rpc"].endswith("InferBatchComposite")
           and l["status"] == "OK"]
    check("audit: acme's inference with avatar t1 and 8 frames",
          any(l["avatar"] == "t1" and l["frames"] == 8 for l in inf), str(inf))
    check("audit: the refused t2 request with its status",
          any(l["key_id"] == "acme" and l["avatar"] == "t2" and
              l["status"] == "PERMISSION_DENIED" for l in lines))
    check("audit: admin LoadModel by ops",
          any(l["key_id"] == "ops" and l["rpc"].endswith("/LoadModel") and l["status"] == "OK"
              for l in lines))
    check("audit: unauthenticated calls logged without a key id",
          any(l["key_id"] == "" and l["status"] == "UNAUTHENTICATED" for l in lines))


@run
def auth_bad_keys_file():
    bad = os.path.join(tmp, "bad_keys.json")
    with open(bad, "w") as f:
        f.write(json.dumps({"keys": [{"id": "a", "sha256": sha("x"), "role": "root",
                                      "avatars": "*"}]}))
    r = subprocess.run([BIN, "serve", "--port", str(free_port()), "--models-root", root,
                        "--auth.keys_file", bad], capture_output=True, text=True, timeout=60)
    check("a keys file with a bad role stops start-up naming file, key and field",
          r.returncode != 0 and "bad_keys.json" in r.stderr and "role" in r.stderr,
          "rc %d %s" % (r.returncode, r.stderr[-500:]))


@run
def compositing_to_inference_tls():
    """The compositing role calls an inference server over TLS with its own API key."""
    kp = os.path.join(tmp, "inf_keys.json")
    with open(kp, "w") as f:
        f.write(json.dumps({"keys": [{"id": "compositor", "sha256": sha("comp-secret-1"),
                                      "avatars": ["t1"]}]}))
    kf = os.path.join(tmp, "comp.key")
    with open(kf, "w") as f:
        f.write("comp-secret-1\n")
    inf_audit = os.path.join(tmp, "inf_audit.log")
    pi, porti, _, ok = start_server(
        "inf_tls", ["--role", "inference", "--server.tls_cert", P("server.pem"),
                    "--server.tls_key", P("server.key"), "--auth.keys_file", kp,
                    "--audit.enabled", "true", "--audit.file", inf_audit],
        lambda port: secure_channel(port, "ca.pem"))
    check("inference role with TLS and keys starts", ok)
    if not ok:
        return
    pc, portc, _, ok = start_server(
        "comp_tls", ["--role", "compositing", "--inference_server.url",
                     "127.0.0.1:%d" % porti, "--inference_server.tls_ca", P("ca.pem"),
                     "--inference_server.api_key_file", kf])
    check("compositing role reaches the TLS inference server with its key (SERVING)", ok)
    if ok:
        ch = channel(portc)
        comp = cgrpc.CompositingServiceStub(ch)
        B = 2
        r = comp.InferBatchComposite(cpb.CompositeBatchRequest(
            model_id="t1", raw_audio=pcm_for(B, 0).tobytes(), batch_size=B, start_frame_idx=0,
            sample_rate=16000), timeout=60)
        check("compositing -> inference over TLS: 2 frames", len(r.composited_frames) == B,
              str(r)[:200])
        ch.close()
        stop(pc, 20)
    stop(pi, 20)
    lines = [json.loads(l) for l in open(inf_audit) if l.strip()]
    check("inference audit: InferBatch by key compositor on t1 with 2 frames",
          any(l["key_id"] == "compositor" and l["rpc"].endswith("/InferBatch") and
              l["avatar"] == "t1" and l["frames"] == 2 for l in lines), str(lines)[:600])


finish()
