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
import socket
import subprocess
import sys
import tempfile
import time
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.abspath(os.environ.get("LIPSYNC_BIN", os.path.join(ROOT, "build/lipsync")))
MODELS = os.path.abspath(os.environ.get("MODELS", os.path.join(ROOT, "models")))
AVATARS = os.path.abspath(os.environ.get("AVATARS", os.path.join(ROOT, "avatars")))

results = []  # (ok, name, note)
servers = []


def tap(ok, name, note=""):
    results.append((ok, name, note))
    print("%s %d - %s%s" % ("ok" if ok else "not ok", len(results), name,
                            (" # " + note) if note else ""))
    sys.stdout.flush()


def finish():
    for p, _ in servers:
        if p.poll() is None:
            p.kill()
            p.wait()
    p = sum(1 for r in results if r[0])
    f = len(results) - p
    print("1..%d" % len(results))
    print("%d passed, %d failed" % (p, f))
    sys.exit(1 if f else 0)


try:
    import grpc
    import numpy as np
except Exception as e:  # Debian's python3 has them; anything else is a setup error
    print("# cannot import grpc/numpy: %s" % e)
    tap(False, "imports")
    finish()

if not os.access(BIN, os.X_OK):
    print("# %s not built" % BIN)
    tap(False, "binary exists")
    finish()
if not shutil.which("openssl"):
    print("# openssl not installed")
    tap(False, "openssl exists")
    finish()

tmp = tempfile.mkdtemp(prefix="lipsync-sec-")
stubs = os.path.join(tmp, "stubs")
os.makedirs(stubs)
plugin = shutil.which("grpc_python_plugin")
protos = [os.path.join(ROOT, "proto", p)
          for p in ("monolithic.proto", "health.proto", "optimized_lipsyncsrv.proto")]
subprocess.check_call(["protoc", "-I" + os.path.join(ROOT, "proto"), "--python_out=" + stubs,
                       "--grpc_python_out=" + stubs,
                       "--plugin=protoc-gen-grpc_python=" + plugin] + protos)
sys.path.insert(0, stubs)
import health_pb2 as hpb  # noqa: E402
import health_pb2_grpc as hgrpc  # noqa: E402
import monolithic_pb2 as mpb  # noqa: E402
import monolithic_pb2_grpc as mgrpc  # noqa: E402
import optimized_lipsyncsrv_pb2 as opb  # noqa: E402
import optimized_lipsyncsrv_pb2_grpc as ogrpc  # noqa: E402

# ---- two small test avatars (t1, t2): 12 frames, the tiny UNet --------------------------------
root = os.path.join(tmp, "models_root")
os.makedirs(root)
unet_tiny = os.path.join(MODELS, "unet_tiny.onnx")
gen = os.path.join(ROOT, "tools", "gen_avatar.py")
for av in ("t1", "t2"):
    if os.path.exists(gen) and os.path.exists(unet_tiny):
        subprocess.check_call([sys.executable, gen, "--out", os.path.join(root, av), "--unet",
                               unet_tiny, "--frames", "12"], stdout=subprocess.DEVNULL)
    elif os.path.isdir(os.path.join(AVATARS, "demo")):
        shutil.copytree(os.path.join(AVATARS, "demo"), os.path.join(root, av))
    else:
        print("# no avatar generator and no demo avatar")
        tap(False, "test avatars")
        finish()
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
def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


MAXMSG = 200 << 20
OPTS = [("grpc.max_receive_message_length", MAXMSG), ("grpc.max_send_message_length", MAXMSG)]


def secure_channel(port, ca=None, cert=None, key=None):
    creds = grpc.ssl_channel_credentials(root_certificates=pem(ca) if ca else None,
                                         private_key=pem(key) if key else None,
                                         certificate_chain=pem(cert) if cert else None)
    return grpc.secure_channel("127.0.0.1:%d" % port, creds, options=OPTS)


def start_server(name, extra, chan_fn):
    """Starts `lipsync serve` with extra flags; waits until health Check over chan_fn(port)
    answers SERVING. Returns (process, port, log path)."""
    port = free_port()
    logp = os.path.join(tmp, name + ".log")
    log = open(logp, "w+")
    p = subprocess.Popen([BIN, "serve", "--role", "monolithic", "--host", "127.0.0.1",
                          "--port", str(port), "--models-root", root, "--default-model", "t1",
                          "--audio.encoder_path", encoder, "--server.grace_period_s", "2",
                          "--server.workers", "2"] + extra, stdout=log, stderr=subprocess.STDOUT)
    servers.append((p, logp))
    ch = chan_fn(port)
    h = hgrpc.HealthStub(ch)
    t0 = time.time()
    ok = False
    while time.time() - t0 < 60 and p.poll() is None:
        try:
            if h.Check(hpb.HealthCheckRequest(service=""), timeout=1).status == 1:
                ok = True
                break
        except grpc.RpcError:
            time.sleep(0.2)
    ch.close()
    if not ok:
        log.seek(0)
        print("# %s log:\n# %s" % (name, log.read().replace("\n", "\n# ")))
    return p, port, logp, ok


def code_of(fn, *a, **kw):
    try:
        fn(*a, **kw)
        return grpc.StatusCode.OK, ""
    except grpc.RpcError as e:
        return e.code(), e.details()


def check(name, cond, note=""):
    tap(bool(cond), name, "" if cond else note)


def test(fn):
    try:
        fn()
    except Exception:
        tap(False, fn.__name__, "exception")
        print("# " + traceback.format_exc().replace("\n", "\n# "))
    return fn


def health_code(ch):
    return code_of(hgrpc.HealthStub(ch).Check, hpb.HealthCheckRequest(service=""), timeout=5)


def stop(p):
    p.send_signal(signal.SIGTERM)
    try:
        return p.wait(timeout=20)
    except subprocess.TimeoutExpired:
        p.kill()
        return -9


# ---- TLS ----------------------------------------------------------------------------------------
@test
def tls():
    p, port, _, ok = start_server(
        "tls", ["--server.tls_cert", P("server.pem"), "--server.tls_key", P("server.key")],
        lambda port: secure_channel(port, "ca.pem"))
    check("TLS server starts and answers over TLS with the right CA", ok)
    if not ok:
        return
    c, d = health_code(grpc.insecure_channel("127.0.0.1:%d" % port))
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
    check("TLS server drains on SIGTERM and exits 0", stop(p) == 0)


@test
def mtls():
    p, port, _, ok = start_server(
        "mtls", ["--server.tls_cert", P("server.pem"), "--server.tls_key", P("server.key"),
                 "--server.tls_client_ca", P("ca.pem")],
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
    stop(p)


@test
def tls_bad_config():
    r = subprocess.run([BIN, "serve", "--port", str(free_port()), "--models-root", root,
                        "--server.tls_cert", P("server.pem"), "--server.tls_key",
                        P("missing.key")], capture_output=True, text=True, timeout=60)
    check("TLS: a missing key file stops start-up with a message naming it",
          r.returncode != 0 and "missing.key" in r.stderr, "rc %d %s" % (r.returncode, r.stderr))


finish()
