# SPDX-License-Identifier: MIT
"""tests/py/lstest.py: what the Python integration tests (tests/py/test_*.py) share.

Not a test itself (tests/run.sh runs tests/py/test_*.py only); each test imports it from its
own directory (`import lstest` works because Python puts the script's folder on sys.path).

- Paths from the environment tests/run.sh sets: ROOT, BUILD, BIN (LIPSYNC_BIN), MODELS,
  AVATARS, SHARED (SHARED_DIR).
- Reporting: tap()/check() print TAP lines, run() runs one test function and turns an
  exception into a failed check with its traceback, finish() prints the "1..N" plan and the
  "N passed, N failed" line tests/run.sh reads, cleans up and exits (1 on any failure);
  skip_all(), imports_failed() and require() end a file that cannot run here.
- Cleanup: tmpdir() and serve() register what finish() removes or kills; a failed run keeps
  its temporary directory (server logs) and says where.
- Servers: free_port(), serve() (`lipsync serve` with its output in a log file),
  wait_until()/wait_serving() (grpc.health.v1), started(), stop(), log_tail().
- gRPC: gen_stubs() (protoc + grpc_python_plugin into a temporary directory), stub(),
  channel(), status_of()/code().
- Data: make_avatar() (tools/gen_avatar.py), speech() and wav_bytes(), feature_window(),
  http().

grpc and numpy are imported inside the functions that need them, so a test can report a
missing module as a failed check (imports_failed()) instead of dying on import.
"""
import importlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.path.join(ROOT, os.environ.get("BUILD", "build"))
BIN = os.path.abspath(os.environ.get("LIPSYNC_BIN", os.path.join(ROOT, "build/lipsync")))
MODELS = os.path.abspath(os.environ.get("MODELS", os.path.join(ROOT, "models")))
AVATARS = os.path.abspath(os.environ.get("AVATARS", os.path.join(ROOT, "avatars")))
SHARED = os.path.abspath(os.environ.get("SHARED_DIR", os.path.join(ROOT, "..", "shared")))
PY = sys.executable
MAX_MSG = 200 << 20  # client message limits, above the server's 100 MiB

# ---- reporting -------------------------------------------------------------------------------
results = []  # one bool per counted check
_skipped = 0  # skipped(): counted apart from passed and failed
_number = 0   # TAP line number
_procs = []   # processes finish() kills if they still run
_tmps = []    # directories finish() removes when every check passed


def tap(ok, name, note="", skip=None):
    """One TAP line. `note` is printed after a failure; `skip` (a reason) prints the check as
    "ok N - name # SKIP reason" and counts it as passed (a check this machine cannot run)."""
    global _number
    _number += 1
    ok = bool(ok) or skip is not None
    results.append(ok)
    if skip is not None:
        print("ok %d - %s # SKIP %s" % (_number, name, skip))
    else:
        print("%s %d - %s%s" % ("ok" if ok else "not ok", _number, name,
                                (" # " + note) if note and not ok else ""))
    sys.stdout.flush()


def check(name, cond, note=""):
    """tap() with the name first."""
    tap(cond, name, note)


def skipped(name, why):
    """A test that did not run: "ok N - name # SKIP why", counted as skipped, not passed."""
    global _number, _skipped
    _number += 1
    _skipped += 1
    print("ok %d - %s # SKIP %s" % (_number, name, why))
    sys.stdout.flush()


def all_passed():
    return all(results)


def run(fn):
    """Decorator: runs fn now; an exception is a failed check named after fn, traceback as
    TAP comments. Returns fn."""
    try:
        fn()
    except Exception:
        tap(False, fn.__name__, "exception")
        comment(traceback.format_exc())
    return fn


def comment(text):
    """Prints text as TAP comment lines."""
    print("# " + text.rstrip("\n").replace("\n", "\n# "))
    sys.stdout.flush()


def finish():
    """Kills registered processes still running, removes the temporary directories if every
    check passed (else says where they are), prints the plan and summary, exits."""
    for p in _procs:
        if p.poll() is None:
            p.kill()
            p.wait()
    passed = sum(1 for r in results if r)
    failed = len(results) - passed
    for d in _tmps:
        if failed == 0:
            shutil.rmtree(d, ignore_errors=True)
        else:
            print("# logs kept in %s" % d)
    print("1..%d" % _number)
    print("%d passed, %d failed%s" % (passed, failed,
                                      ", %d skipped" % _skipped if _skipped else ""))
    sys.stdout.flush()
    sys.exit(1 if failed else 0)


def skip_all(name, why):
    """The whole file cannot run here (a missing model or program): one skipped check."""
    tap(True, name, skip=why)
    finish()


def imports_failed(what, err):
    """A Python module the test needs is missing: one failed check, then finish()."""
    print("# cannot import %s: %s" % (what, err))
    tap(False, "imports")
    finish()


def require(ok, name, why):
    """Something the whole file needs (the binary, a program, test data): when ok is false,
    prints why as a comment, one failed check named name, then finish()."""
    if not ok:
        comment(why)
        tap(False, name)
        finish()


def tmpdir(prefix):
    """A fresh temporary directory, removed by finish() when every check passed."""
    d = tempfile.mkdtemp(prefix=prefix)
    _tmps.append(d)
    return d


def register(proc):
    """finish() kills proc if it is still running."""
    _procs.append(proc)
    return proc


# ---- processes -------------------------------------------------------------------------------
def free_port():
    """A TCP port free on 127.0.0.1 right now."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def serve(args, log_path):
    """Starts `BIN serve ARGS` with stdout and stderr appended to log_path. Returns (process,
    log file open for reading and writing)."""
    log = open(log_path, "a+")
    p = subprocess.Popen([BIN, "serve"] + list(args), stdout=log, stderr=subprocess.STDOUT)
    register(p)
    return p, log


def wait_until(cond, limit=60, proc=None, interval=0.2):
    """Calls cond() until it is true (exceptions count as false) for up to limit seconds, or
    until proc exits. Returns whether it became true."""
    t0 = time.time()
    while time.time() - t0 < limit and (proc is None or proc.poll() is None):
        try:
            if cond():
                return True
        except Exception:
            pass
        time.sleep(interval)
    return False


def health_status(port, service="", timeout=2, channel_fn=None):
    """grpc.health.v1 Check on a channel of its own: the status number, or the error's status
    code. channel_fn(port) makes the channel (TLS); plaintext by default. Needs the health
    stubs (gen_stubs() always makes them)."""
    import grpc
    hpb, hgrpc = stub("health")
    ch = channel_fn(port) if channel_fn else grpc.insecure_channel("127.0.0.1:%d" % port)
    try:
        return hgrpc.HealthStub(ch).Check(hpb.HealthCheckRequest(service=service),
                                          timeout=timeout).status
    except grpc.RpcError as e:
        return e.code()
    finally:
        ch.close()


def wait_serving(port, service="", limit=60, proc=None, channel_fn=None):
    """Waits until `service` on port is SERVING in grpc.health.v1 (limit seconds, or until proc
    exits)."""
    return wait_until(lambda: health_status(port, service, 1, channel_fn) == 1, limit, proc,
                      interval=0.1)


def log_tail(log, lines=None, title="server log tail"):
    """Prints the log file (open for reading, or a path), or its last `lines` lines, as TAP
    comments."""
    if isinstance(log, str):
        with open(log) as f:
            text = f.read()
    else:
        log.seek(0)
        text = log.read()
    ls = text.splitlines()
    print("# %s:" % title)
    comment("\n".join(ls[-lines:] if lines else ls))


def started(ok, name, log=None):
    """The check that a server came up; when it did not, prints its log and finish()es."""
    tap(ok, name)
    if not ok:
        if log is not None:
            log_tail(log, title="server log")
        finish()


def stop(proc, timeout=15):
    """SIGTERM, then SIGKILL after timeout seconds. Returns the exit status, None if killed."""
    proc.terminate()
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return None


def kill(proc):
    """SIGKILL (if still running) and reap."""
    if proc.poll() is None:
        proc.kill()
    proc.wait()


# ---- gRPC ------------------------------------------------------------------------------------
def gen_stubs(tmp, *protos):
    """Python message and service modules for proto/NAME.proto (health always included) into
    TMP/stubs, which goes first on sys.path. Returns that directory."""
    stubs = os.path.join(tmp, "stubs")
    os.makedirs(stubs)
    names = list(dict.fromkeys(list(protos) + ["health"]))
    subprocess.check_call(["protoc", "-I" + os.path.join(ROOT, "proto"), "--python_out=" + stubs,
                           "--grpc_python_out=" + stubs,
                           "--plugin=protoc-gen-grpc_python=" + shutil.which("grpc_python_plugin")]
                          + [os.path.join(ROOT, "proto", n + ".proto") for n in names])
    sys.path.insert(0, stubs)
    return stubs


def stub(name):
    """(NAME_pb2, NAME_pb2_grpc) of a proto gen_stubs() made."""
    return (importlib.import_module(name + "_pb2"), importlib.import_module(name + "_pb2_grpc"))


def channel(port, receive_only=False, creds=None):
    """A channel to 127.0.0.1:port allowing MAX_MSG messages (received only, or both ways):
    plaintext, or TLS with creds (grpc.ssl_channel_credentials)."""
    import grpc
    opts = [("grpc.max_receive_message_length", MAX_MSG)]
    if not receive_only:
        opts.append(("grpc.max_send_message_length", MAX_MSG))
    if creds is not None:
        return grpc.secure_channel("127.0.0.1:%d" % port, creds, options=opts)
    return grpc.insecure_channel("127.0.0.1:%d" % port, options=opts)


def status_of(fn, *a, **kw):
    """Calls fn; returns (status code, details): (OK, "") when it returned."""
    import grpc
    try:
        fn(*a, **kw)
        return grpc.StatusCode.OK, ""
    except grpc.RpcError as e:
        return e.code(), e.details()


def code(fn, *a, **kw):
    """The status code of calling fn (OK when it returned)."""
    return status_of(fn, *a, **kw)[0]


# ---- data ------------------------------------------------------------------------------------
def make_avatar(dest, unet="unet_tiny.onnx", frames=12, fallback=False):
    """tools/gen_avatar.py: a FRAMES-frame test avatar at dest with MODELS/UNET. With fallback,
    when the generator or the model is missing, a copy of AVATARS/demo instead. Returns whether
    an avatar was made."""
    gen = os.path.join(ROOT, "tools", "gen_avatar.py")
    model = os.path.join(MODELS, unet)
    if not fallback or (os.path.exists(gen) and os.path.exists(model)):
        subprocess.check_call([PY, gen, "--out", dest, "--unet", model, "--frames", str(frames)],
                              stdout=subprocess.DEVNULL)
        return True
    if os.path.isdir(os.path.join(AVATARS, "demo")):
        shutil.copytree(os.path.join(AVATARS, "demo"), dest)
        return True
    return False


def speech(seconds, seed=0, noise=0.01):
    """A voiced-sounding 16 kHz float32 test signal: a few harmonics of a gliding 120 Hz pitch
    with a syllable-rate envelope, plus `noise` times seeded Gaussian noise."""
    import numpy as np
    t = np.arange(int(seconds * 16000)) / 16000.0
    f0 = 120 + 30 * np.sin(2 * np.pi * 0.7 * t)
    ph = 2 * np.pi * np.cumsum(f0) / 16000.0
    x = sum(np.sin(k * ph) / k for k in range(1, 6))
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t) ** 2
    y = 0.3 * x * env
    if noise:
        y = y + noise * np.random.RandomState(seed).randn(len(t))
    return y.astype(np.float32)


def wav_bytes(x):
    """A mono 16 kHz 16-bit WAV file (bytes) of float samples in [-1, 1] (clipped)."""
    import io
    import wave
    import numpy as np
    pcm = (np.clip(x, -1, 1) * 32767).astype("<i2")
    b = io.BytesIO()
    with wave.open(b, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(pcm.tobytes())
    return b.getvalue()


def feature_window():
    """One encoder feature window ([16][512] float32) of smooth values, for requests that pass
    audio_features instead of audio."""
    import numpy as np
    return np.linspace(-1, 1, 8192, dtype=np.float32)


def http(url, method="GET", timeout=5):
    """(status, body bytes, headers) of one request; HTTP errors are answers, not exceptions."""
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read(), r.headers
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers
