# SPDX-License-Identifier: MIT
"""tests/py/test_metrics_http.py: a real HTTP client (urllib) against the metrics endpoint.

Starts `build/tests/test_metrics --serve 0 SECONDS READY_FILE` (libmicrohttpd on 127.0.0.1, any
free port), scrapes /metrics and parses the Prometheus text format strictly, checks the sample
values the helper put in, /healthz, /readyz (503, then 200 once READY_FILE exists), 404 and 405,
concurrent scrapes, and a clean exit on SIGTERM. Prints TAP and 'N passed, N failed'."""
import os
import re
import signal
import subprocess
import threading
import time

from lstest import BUILD, ROOT, check, finish, http, skipped, tmpdir

BIN = os.path.join(BUILD, "tests", "test_metrics")


def get(url, method="GET"):
    """Returns (status, headers, body text) without raising on HTTP errors."""
    st, body, hdr = http(url, method)
    return st, dict(hdr), body.decode()


NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
SAMPLE = re.compile(rf"^({NAME})(\{{{LABEL}(?:,{LABEL})*\}})? (\S+)$")
VALUE = re.compile(r"^(?:[+-]?(?:\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)|[+-]Inf|NaN)$")


def parse(text):
    """Strict parse of exposition format 0.0.4 -> {family: {"type", "help", "samples": [...]}}.
    Raises ValueError naming the first bad line."""
    fams, cur = {}, None
    if not text.endswith("\n"):
        raise ValueError("body does not end with a newline")
    for line in text[:-1].split("\n"):
        if line.startswith("# HELP "):
            name = line.split(" ", 3)[2]
            fams.setdefault(name, {"samples": []})["help"] = line.split(" ", 3)[3] if line.count(" ") >= 3 else ""
            continue
        if line.startswith("# TYPE "):
            _, _, name, typ = line.split(" ")
            if typ not in ("counter", "gauge", "histogram"):
                raise ValueError(f"bad type line {line!r}")
            if "type" in fams.get(name, {}):
                raise ValueError(f"family {name} typed twice")
            fams.setdefault(name, {"samples": []})["type"] = typ
            cur = name
            continue
        m = SAMPLE.match(line)
        if not m or not VALUE.match(m.group(3)):
            raise ValueError(f"bad sample line {line!r}")
        name, labels, value = m.group(1), m.group(2) or "", m.group(3)
        suffixes = ("", "_bucket", "_sum", "_count") if fams[cur]["type"] == "histogram" else ("",)
        if cur is None or not any(name == cur + s for s in suffixes):
            raise ValueError(f"sample {name} outside family {cur}")
        lab = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', labels))
        fams[cur]["samples"].append((name, lab, float(value)))
    return fams


def main():
    if not os.access(BIN, os.X_OK):
        skipped("metrics http", "%s not built" % BIN)
        return
    tmp = tmpdir("lipsync-metrics-")
    ready_file = os.path.join(tmp, "ready")
    proc = subprocess.Popen([BIN, "--serve", "0", "60", ready_file], stdout=subprocess.PIPE,
                            text=True)
    try:
        line = proc.stdout.readline()
        m = re.match(r"port (\d+)", line)
        check("server starts and reports its port", m is not None, repr(line))
        if not m:
            return
        base = f"http://127.0.0.1:{m.group(1)}"

        st, hdr, body = get(base + "/metrics")
        check("/metrics is 200", st == 200, str(st))
        check("/metrics content type is text format 0.0.4",
              hdr.get("Content-Type", "").startswith("text/plain; version=0.0.4"), str(hdr))
        try:
            fams = parse(body)
            check("exposition parses strictly", True)
        except ValueError as e:
            check("exposition parses strictly", False, str(e))
            fams = {}
        for fam in ("lipsync_requests_total", "lipsync_frames_total", "lipsync_stage_seconds",
                    "lipsync_queue_depth", "lipsync_avatars_loaded", "lipsync_evictions_total",
                    "process_resident_memory_bytes", "lipsync_heap_in_use_bytes",
                    "lipsync_heap_free_bytes", "lipsync_ready", "lipsync_build_info"):
            check(f"family {fam} present with HELP and TYPE",
                  fam in fams and "type" in fams[fam] and "help" in fams[fam])

        def value(fam, name, **labels):
            for n, lab, v in fams.get(fam, {}).get("samples", []):
                if n == name and lab == labels:
                    return v
            return None

        check("requests_total{Infer,OK} = 7",
              value("lipsync_requests_total", "lipsync_requests_total", rpc="Infer", code="OK") == 7)
        check("requests_total{Infer,INVALID_ARGUMENT} = 2",
              value("lipsync_requests_total", "lipsync_requests_total", rpc="Infer",
                    code="INVALID_ARGUMENT") == 2)
        check("frames_total = 250", value("lipsync_frames_total", "lipsync_frames_total") == 250)
        check("avatars_loaded = 3", value("lipsync_avatars_loaded", "lipsync_avatars_loaded") == 3)
        rss = value("process_resident_memory_bytes", "process_resident_memory_bytes")
        check("resident memory is plausible (1 MiB .. 64 GiB)",
              rss is not None and (1 << 20) < rss < (64 << 30), str(rss))
        used = value("lipsync_heap_in_use_bytes", "lipsync_heap_in_use_bytes")
        free = value("lipsync_heap_free_bytes", "lipsync_heap_free_bytes")
        # The test program holds a few MiB of its own allocations (registry, buffers). Under
        # ASan malloc is the sanitizer's, which glibc's mallinfo2 does not see: no samples then.
        if "asan" in os.path.relpath(BUILD, ROOT).split(os.sep):
            check("sanitizer build: no heap samples (mallinfo2 does not see ASan's allocator)",
                  used is None and free is None, "%s %s" % (used, free))
        else:
            check("malloc heap in use is plausible (64 KiB .. 64 GiB) and free is >= 0",
                  used is not None and (64 << 10) < used < (64 << 30) and free is not None and
                  free >= 0, "%s %s" % (used, free))
        # The helper observed 1..100 ms in 1 ms steps into stage="unet".
        buckets = [(lab["le"], v) for n, lab, v in fams.get("lipsync_stage_seconds", {}).get("samples", [])
                   if n == "lipsync_stage_seconds_bucket" and lab.get("stage") == "unet"]
        les = [float(le) for le, _ in buckets]
        counts = [v for _, v in buckets]
        check("histogram buckets ascend and end at +Inf",
              len(les) > 2 and les == sorted(les) and buckets[-1][0] == "+Inf")
        check("histogram buckets are cumulative", counts == sorted(counts))
        check("histogram +Inf bucket = _count = 100",
              counts and counts[-1] == 100 and
              value("lipsync_stage_seconds", "lipsync_stage_seconds_count", stage="unet") == 100)
        # sum of 1..100 ms = 5.05 s; float addition of 100 values errs by ~1e-14.
        s = value("lipsync_stage_seconds", "lipsync_stage_seconds_sum", stage="unet")
        check("histogram _sum = 5.05", s is not None and abs(s - 5.05) < 1e-9, str(s))
        # Every bucket count equals the number of observations <= le (exact data known).
        exact = all(c == sum(1 for i in range(1, 101) if i * 1e-3 <= le * (1 + 1e-12))
                    for le, c in zip(les[:-1], counts[:-1]))
        check("every bucket count matches the observed data", exact)

        st, _, body = get(base + "/healthz")
        check("/healthz is 200 ok", st == 200 and body.strip() == "ok", f"{st} {body!r}")
        st, _, body = get(base + "/readyz")
        check("/readyz is 503 before ready", st == 503, str(st))
        check("lipsync_ready is 0 before ready",
              value("lipsync_ready", "lipsync_ready") == 0)
        open(ready_file, "w").close()
        deadline = time.time() + 5
        while time.time() < deadline:
            st, _, body = get(base + "/readyz")
            if st == 200:
                break
            time.sleep(0.05)
        check("/readyz turns 200 after the flip", st == 200 and body.strip() == "ready", str(st))
        fams = parse(get(base + "/metrics")[2])
        check("lipsync_ready is 1 after ready", value("lipsync_ready", "lipsync_ready") == 1)
        st, _, _ = get(base + "/nope")
        check("unknown path is 404", st == 404, str(st))
        st, _, _ = get(base + "/metrics", method="POST")
        check("POST is 405", st == 405, str(st))
        st, _, body = get(base + "/metrics", method="HEAD")
        check("HEAD /metrics is 200 with no body", st == 200 and body == "", str(st))

        # 16 concurrent scrapers, 10 scrapes each: all succeed and parse.
        errors = []

        def scrape():
            for _ in range(10):
                try:
                    st, _, b = get(base + "/metrics")
                    if st != 200:
                        errors.append(st)
                    parse(b)
                except Exception as e:  # noqa: BLE001 - collected and reported below
                    errors.append(repr(e))

        ts = [threading.Thread(target=scrape) for _ in range(16)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        check("160 concurrent scrapes all succeed", not errors, str(errors[:3]))

        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            rc = None
        rest = proc.stdout.read() if rc is not None else ""
        check("SIGTERM stops the server cleanly (exit 0)", rc == 0 and "stopped" in rest,
              f"rc={rc}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


if __name__ == "__main__":
    main()
    finish()
