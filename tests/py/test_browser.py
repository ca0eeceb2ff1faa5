#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# tests/py/test_browser.py: the web page in a real browser. Starts `lipsync serve` with the
# gateway on loopback (tiny models, a 12-frame test avatar), drives headless Chromium (Debian's
# chromium) over the Chrome DevTools Protocol with a small client on python3-websocket, loads
# the page, feeds a WAV through the page's upload input (a File set on the <input> with
# DataTransfer, then its change event, as a user's pick would), and checks: the avatar list and
# stream come up, idle frames are drawn before any speech, frames are drawn at ~25 fps while
# the utterance plays, the canvas changes in the mouth area (speech frames differ from idle
# frames of the same avatar frame there), and no console error or exception occurs. A
# screenshot goes to build/test-logs/browser.png. Every wait has a deadline; the whole test
# ends within ~60 s. Prints TAP lines and "N passed, N failed". Env: LIPSYNC_BIN, MODELS.
import base64
import json
import os
import shutil
import signal
import subprocess
import time
import traceback
import urllib.request

from lstest import (BUILD, MODELS, all_passed, finish, free_port, imports_failed, log_tail,
                    make_avatar, register, serve, skip_all, speech, started, stop, tap, tmpdir,
                    wait_until, wav_bytes)

LOGDIR = os.path.join(BUILD, "test-logs")


def on_alarm(signum, frame):
    tap(False, "whole test within 90 s")
    finish()


signal.signal(signal.SIGALRM, on_alarm)
signal.alarm(90)

try:
    import numpy as np  # noqa: F401 (lstest.speech)
    import websocket
except Exception as e:
    imports_failed("numpy/websocket (python3-websocket)", e)
CHROME = shutil.which("chromium") or shutil.which("chromium-browser")
if not CHROME:
    skip_all("browser", "chromium not installed (mk/packages.txt installs it)")
for need in ("unet_tiny.onnx", "audio_encoder_tiny.onnx"):
    if not os.path.exists(os.path.join(MODELS, need)):
        skip_all("browser", "%s missing (make models)" % need)

tmp = tmpdir("lipsync-browser-")
root = os.path.join(tmp, "root")
os.makedirs(root)
AVATAR_DIR = os.environ.get("BROWSER_AVATAR_DIR")
AV = os.path.basename(os.path.normpath(AVATAR_DIR)) if AVATAR_DIR else "t1"
if AVATAR_DIR:
    # Another avatar (docs/screenshot.png is made with avatars/demo and its demo UNet). Its
    # frames walk too far in a few seconds to meet an avatar frame both idle and speaking, so
    # the mouth comparison is skipped then.
    os.symlink(os.path.abspath(AVATAR_DIR), os.path.join(root, AV))
else:
    make_avatar(os.path.join(root, "t1"))
with open(os.path.join(root, AV, "crop_rects.json")) as f:
    rects = json.load(f)
if isinstance(rects, dict):
    rects = [v["rect"] for _, v in sorted(rects.items(), key=lambda kv: int(kv[0]))]

PORT, GW = free_port(), free_port()
# No gateway.web_root: the default finds web/ next to the binary's source tree.
srv, log = serve(["--host", "127.0.0.1", "--port", str(PORT), "--models-root", root,
                  "--default-model", AV,
                  "--audio.encoder_path", os.path.join(MODELS, "audio_encoder_tiny.onnx"),
                  "--gateway.port", str(GW), "--server.grace_period_s", "1"],
                 os.path.join(tmp, "server.log"))
URL = "http://127.0.0.1:%d/" % GW


def page_served():
    with urllib.request.urlopen(URL, timeout=2) as r:
        return r.status == 200 and b"app.js" in r.read()


started(wait_until(page_served, 30, srv), "server serves the page from web/ on gateway.port",
        log)

profile = os.path.join(tmp, "profile")
os.makedirs(profile)
chrome = subprocess.Popen([CHROME, "--headless", "--no-sandbox", "--disable-gpu",
                           "--disable-quic", "--no-first-run", "--disable-background-networking",
                           "--disable-component-update", "--disable-sync",
                           "--autoplay-policy=no-user-gesture-required",
                           "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                           "--window-size=1400,760",
                           "--remote-debugging-port=0", "--user-data-dir=" + profile,
                           "about:blank"],
                          stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, "chrome.log"),
                                                                 "w"))
register(chrome)
# Chromium writes the port it picked into DevToolsActivePort.
cdp_port = None
t0 = time.time()
while time.time() - t0 < 20 and chrome.poll() is None:
    try:
        with open(os.path.join(profile, "DevToolsActivePort")) as f:
            cdp_port = int(f.readline())
        break
    except (OSError, ValueError):
        time.sleep(0.1)
tap(cdp_port is not None, "headless Chromium starts with the DevTools protocol")
if cdp_port is None:
    finish()
target = None
t0 = time.time()
while time.time() - t0 < 10 and not target:
    with urllib.request.urlopen("http://127.0.0.1:%d/json/list" % cdp_port, timeout=5) as r:
        target = next((t for t in json.load(r) if t.get("type") == "page"), None)
    if not target:
        time.sleep(0.2)


class Cdp:
    """A minimal DevTools client: numbered commands, events collected as they pass."""

    def __init__(self, url):
        self.ws = websocket.create_connection(url, timeout=10, suppress_origin=True)
        self.n = 0
        self.events = []

    def call(self, method, **params):
        self.n += 1
        mid = self.n
        self.ws.send(json.dumps({"id": mid, "method": method, "params": params}))
        t_end = time.time() + 15
        while time.time() < t_end:
            m = json.loads(self.ws.recv())
            if m.get("id") == mid:
                if "error" in m:
                    raise RuntimeError("%s: %s" % (method, m["error"]))
                return m.get("result", {})
            if "method" in m:
                self.events.append(m)
        raise TimeoutError(method)

    def eval(self, expr):
        r = self.call("Runtime.evaluate", expression=expr, returnByValue=True,
                      awaitPromise=True)
        if "exceptionDetails" in r:
            raise RuntimeError("evaluate %s: %s" % (expr[:60], r["exceptionDetails"]))
        return r["result"].get("value")

    def wait(self, expr, timeout):
        t_end = time.time() + timeout
        while time.time() < t_end:
            v = self.eval(expr)
            if v:
                return v
            time.sleep(0.1)
        return None


try:
    cdp = Cdp(target["webSocketDebuggerUrl"])
    cdp.call("Runtime.enable")
    cdp.call("Log.enable")
    cdp.call("Page.enable")
    cdp.call("Page.navigate", url=URL)
    opened = cdp.wait("window.lipsync && window.lipsync.open === true", 20)
    tap(opened, "page lists avatars and opens a stream")
    n_opt = cdp.eval("document.querySelectorAll('#avatar option').length")
    tap(n_opt == 1 and cdp.eval("document.getElementById('avatar').value") == AV,
        "avatar picker filled from the server's list")
    idle = cdp.wait("window.lipsync.drawn >= 10 && window.lipsync.speechFrames === 0", 10)
    tap(idle, "idle frames are drawn while nobody speaks")
    # Mouth area of the avatar (its crop rects are nearly constant); the page sums that region
    # of every frame it draws.
    x1, y1, x2, y2 = rects[0]
    cdp.eval("window.lipsync.probe = {x:%d, y:%d, w:%d, h:%d}" % (x1 + 20, y1 + 20,
                                                                  x2 - x1 - 40, y2 - y1 - 40))
    seconds = 3.0
    b64 = base64.b64encode(wav_bytes(speech(seconds, noise=0))).decode()
    cdp.eval("""(() => {
        const bin = atob('%s');
        const u8 = new Uint8Array(bin.length);
        for (let i = 0; i < bin.length; i++) u8[i] = bin.charCodeAt(i);
        const dt = new DataTransfer();
        dt.items.add(new File([u8], 'speech.wav', {type: 'audio/wav'}));
        const input = document.getElementById('file');
        input.files = dt.files;
        input.dispatchEvent(new Event('change'));
        return true; })()""" % b64)
    started = cdp.wait("window.lipsync.speechFrames > 0", 15)
    tap(started, "speech frames arrive after the upload")
    # Count drawn frames over 2 s while the utterance plays (75 frames long).
    time.sleep(0.5)
    d0, r0, t0 = cdp.eval("[window.lipsync.drawn, window.lipsync.frames]") + [time.time()]
    time.sleep(2.0)
    d1, r1, t1 = cdp.eval("[window.lipsync.drawn, window.lipsync.frames]") + [time.time()]
    fps = (d1 - d0) / (t1 - t0)
    rfps = (r1 - r0) / (t1 - t0)
    os.makedirs(LOGDIR, exist_ok=True)
    shot = cdp.call("Page.captureScreenshot", format="png")
    png = os.path.join(LOGDIR, "browser.png")
    with open(png, "wb") as f:
        f.write(base64.b64decode(shot["data"]))
    print("# screenshot: %s; frames in %.1f fps, drawn %.1f fps" % (png, rfps, fps))
    # Paced frames leave the server at 25 fps; 20..30 over 2 s allows scheduling jitter on a
    # loaded 2-core machine (a functional check, not a benchmark).
    tap(20 <= rfps <= 30, "frames arrive at ~25 fps during speech", "%.1f fps" % rfps)
    # Drawing: headless Chromium decodes and composites 1280x720 JPEGs in software on the same
    # 2 cores as the server and other tests; at least half the rate and never more than 25
    # shows the frames are drawn on their schedule rather than as they come.
    tap(12 <= fps <= 27, "frames drawn on the 25 fps timeline (12..27 fps on this machine)",
        "%.1f fps" % fps)
    done = cdp.wait("window.lipsync.speechFrames >= %d" % int(seconds * 25 - 2), 10)
    sp = cdp.eval("window.lipsync.speechFrames")
    # 3 s of audio is 75 frames; +-2 for the window edges
    tap(done and abs(sp - seconds * 25) <= 2, "the whole utterance arrives (75 +- 2 frames)",
        "%s frames" % sp)
    time.sleep(0.5)
    probes = cdp.eval("window.lipsync.probes")
    by_af = {}
    for p in probes:
        by_af.setdefault(p["af"], {"idle": set(), "speech": set()})[
            "speech" if p["speech"] else "idle"].add(p["sum"])
    both = [v for v in by_af.values() if v["idle"] and v["speech"]]
    changed = [v for v in both if not (v["speech"] <= v["idle"])]
    stable = all(len(v["idle"]) == 1 for v in by_af.values() if v["idle"])
    tap(AVATAR_DIR or (len(both) >= 3 and len(changed) == len(both)),
        "canvas changes in the mouth area: speech differs from idle of the same avatar frame",
        "%d of %d avatar frames" % (len(changed), len(both)))
    tap(stable, "idle frames of one avatar frame draw the same mouth (the probe is exact)")
    stats = cdp.eval("[document.getElementById('fps').textContent, "
                     "document.getElementById('dropped').textContent, "
                     "document.getElementById('latency_first').textContent]")
    print("# page readout: fps %s, dropped %s, first-frame latency %s" % tuple(stats))
    print("# drops: %s" % cdp.eval("JSON.stringify([window.lipsync.gapDrops, "
                                   "window.lipsync.lateDrops, window.lipsync.tickDrops, "
                                   "window.lipsync.rebases, window.lipsync.audioClock])"))
    tap(stats[2].endswith("ms"), "page shows FPS, dropped frames and latency")
    sched = cdp.eval("[window.lipsync.audioClock, window.lipsync.played]")
    tap(not sched[0] or sched[1] == 1,
        "the uploaded audio is scheduled on the AudioContext clock with its first frame",
        str(sched))
    # Text box -> the server's TTS -> a second utterance whose audio the page plays.
    if cdp.eval("window.lipsync.tts"):
        sp0 = cdp.eval("window.lipsync.speechFrames")
        cdp.eval("document.getElementById('text').value = 'Hello from the browser test.';"
                 "document.getElementById('say').click(); true")
        ok = cdp.wait("window.lipsync.speechFrames > %d + 20 && window.lipsync.utts.length == 2"
                      " && window.lipsync.utts[1].pcm !== null" % sp0, 15)
        tap(ok, "text box: the server speaks it, frames and its audio arrive")
    else:
        tap(True, "text box # SKIP the server has no TTS (espeak-ng not installed)")
    # Microphone (Chromium's fake capture device): speech frames for a third utterance.
    sp0 = cdp.eval("window.lipsync.speechFrames")
    cdp.eval("document.getElementById('mic').click(); true")
    mic_on = cdp.wait("window.lipsync.mic !== null", 5)
    time.sleep(1.5)
    cdp.eval("document.getElementById('mic').click(); true")
    ok = cdp.wait("window.lipsync.speechFrames > %d + 10 && window.lipsync.mic === null" % sp0,
                  10)
    tap(mic_on and ok, "microphone: captured audio (16 kHz) comes back as speech frames",
        "%s frames" % (cdp.eval("window.lipsync.speechFrames") - sp0))
    # A stream the server ends (here: a NaN sample is INVALID_ARGUMENT) is opened again and the
    # avatar goes on idling.
    opens = cdp.eval("window.lipsync.opens")
    cdp.eval("window.lipsync.ws.send(new Float32Array([NaN, 0, 0, 0]).buffer); true")
    ok = cdp.wait("window.lipsync.opens > %d" % opens, 10)
    d0 = cdp.eval("window.lipsync.drawn")
    ok = ok and cdp.wait("window.lipsync.drawn > %d + 10" % d0, 5)
    tap(ok, "a stream the server ends is reopened and idle frames go on")
    errors = []
    for e in cdp.events:
        m, p = e["method"], e.get("params", {})
        if m == "Runtime.exceptionThrown":
            errors.append(p["exceptionDetails"].get("text", "") + " " +
                          str(p["exceptionDetails"].get("exception", {}).get("description")))
        elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            errors.append(" ".join(str(a.get("value", a.get("description"))) for a in
                                   p.get("args", [])))
        elif m == "Log.entryAdded" and p["entry"]["level"] == "error":
            errors.append(p["entry"]["text"] + " " + p["entry"].get("url", ""))
    tap(not errors, "no console errors or exceptions", "; ".join(errors)[:500])
    cdp.ws.close()
except Exception:
    tap(False, "browser session", "exception")
    print("# " + traceback.format_exc().replace("\n", "\n# "))

stop(chrome, 10)
tap(stop(srv) == 0, "server with a browser session drains and exits 0 on SIGTERM")
if not all_passed():
    log_tail(log, 20)
finish()
