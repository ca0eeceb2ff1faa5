#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# tests/py/test_deploy.py: static checks of the separated-deployment examples in deploy/:
# docker-compose.yml through `docker-compose config` (the Compose schema check; skipped when
# docker-compose is not installed), and the Kubernetes manifests by structural checks (kubectl
# validates only against a cluster's API server, and there is none here): each document has
# apiVersion/kind/metadata, Deployment selectors match their pod labels, every Service selects
# a Deployment, the inference Service is headless, probes use grpc on a declared container port,
# and the compositing servers' inference_server.url names the headless Service and its port.
# Finally the flags of every container are checked by the binary itself: `lipsync serve ...
# --print-config` must accept them. Prints TAP lines and "N passed, N failed".
import os
import shutil
import subprocess

from lstest import BIN, ROOT, finish, free_port, serve, stop, tap, tmpdir, wait_until

DEPLOY = os.path.join(ROOT, "deploy")

try:
    import yaml
except ImportError:
    print("# python3-yaml missing (mk/packages.txt)")
    tap(False, "import yaml")
    finish()


def serve_accepts(args):
    """The binary parses these serve arguments (paths need not exist for --print-config)."""
    r = subprocess.run([BIN] + list(args) + ["--print-config"], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=30)
    return r.returncode == 0, r.stderr.decode(errors="replace")[-300:]


# ---- docker-compose.yml ----------------------------------------------------------------------
compose_path = os.path.join(DEPLOY, "docker-compose.yml")
compose = yaml.safe_load(open(compose_path))
svcs = compose.get("services", {})
tap(set(svcs) == {"inference", "compositing"}, "compose: inference and compositing services")
dc = shutil.which("docker-compose")
if dc:
    r = subprocess.run([dc, "-f", compose_path, "config", "-q"], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=60)
    tap(r.returncode == 0, "docker-compose config accepts the file (Compose schema)",
        r.stderr.decode(errors="replace")[-300:])
else:
    tap(True, "docker-compose config", skip="docker-compose not installed")
inf_cmd = svcs["inference"]["command"]
comp_cmd = svcs["compositing"]["command"]
url = comp_cmd[comp_cmd.index("--inference_server.url") + 1]
tap(url == "dns:///inference:50051" and "inference" in svcs["compositing"].get("depends_on", []),
    "compose: compositing balances over every inference replica by DNS name")
for name, cmd in (("inference", inf_cmd), ("compositing", comp_cmd)):
    ok, msg = serve_accepts(cmd)
    tap(ok and cmd[0] == "serve", "compose: lipsync accepts the %s command" % name, msg)
    hc = svcs[name]["healthcheck"]["test"]
    port = hc[hc.index("--port") + 1]
    tap(port == ("50051" if name == "inference" else "50052"),
        "compose: %s health check on its role's port" % name)

# ---- Kubernetes ------------------------------------------------------------------------------
docs = []
for f in sorted(os.listdir(os.path.join(DEPLOY, "k8s"))):
    if f.endswith(".yaml"):
        for d in yaml.safe_load_all(open(os.path.join(DEPLOY, "k8s", f))):
            if d:
                docs.append((f, d))
tap(all(d.get("apiVersion") and d.get("kind") and d.get("metadata", {}).get("name")
        for _, d in docs), "k8s: every document has apiVersion, kind, metadata.name (%d)" %
    len(docs))
by_kind = {}
for _, d in docs:
    by_kind.setdefault(d["kind"], []).append(d)
deps = {d["metadata"]["name"]: d for d in by_kind.get("Deployment", [])}
services = {d["metadata"]["name"]: d for d in by_kind.get("Service", [])}
tap(set(deps) == {"lipsync-inference", "lipsync-compositing"} and
    set(services) == {"lipsync-inference", "lipsync-compositing"},
    "k8s: a Deployment and a Service per role")
for name, d in deps.items():
    spec = d["spec"]
    labels = spec["template"]["metadata"]["labels"]
    sel = spec["selector"]["matchLabels"]
    tap(all(labels.get(k) == v for k, v in sel.items()),
        "k8s: %s selector matches its pod labels" % name)
    c = spec["template"]["spec"]["containers"][0]
    ports = {p["containerPort"] for p in c["ports"]}
    rp, lp = c["readinessProbe"]["grpc"], c["livenessProbe"]["grpc"]
    tap(rp["port"] in ports and lp["port"] in ports and "service" not in lp,
        "k8s: %s probes use grpc.health.v1 on its port (liveness on \"\")" % name)
    ok, msg = serve_accepts(c["args"])
    tap(ok, "k8s: lipsync accepts the %s args" % name, msg)
    claim = {v["persistentVolumeClaim"]["claimName"] for v in spec["template"]["spec"]["volumes"]
             if "persistentVolumeClaim" in v}
    pvcs = {p["metadata"]["name"] for p in by_kind.get("PersistentVolumeClaim", [])}
    tap(claim and claim <= pvcs, "k8s: %s mounts a declared claim" % name)
for name, s in services.items():
    sel = s["spec"]["selector"]
    target = deps.get(name)
    labels = target["spec"]["template"]["metadata"]["labels"] if target else {}
    tap(target and all(labels.get(k) == v for k, v in sel.items()),
        "k8s: Service %s selects its Deployment's pods" % name)
inf_svc = services["lipsync-inference"]
tap(inf_svc["spec"].get("clusterIP") == "None", "k8s: the inference Service is headless")
args = deps["lipsync-compositing"]["spec"]["template"]["spec"]["containers"][0]["args"]
kurl = args[args.index("--inference_server.url") + 1]
ns = inf_svc["metadata"]["namespace"]
tap(kurl == "dns:///lipsync-inference.%s.svc.cluster.local:%d" %
    (ns, inf_svc["spec"]["ports"][0]["port"]),
    "k8s: compositing's inference_server.url is the headless Service's DNS name and port",
    kurl)
rp = deps["lipsync-compositing"]["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
tap(rp["grpc"].get("service") == "compositing.CompositingService",
    "k8s: compositing readiness follows compositing.CompositingService (backend health)")

# ---- the container image ---------------------------------------------------------------------
# The runtime stage installs exactly what the binary links: every NEEDED library of build/lipsync
# (found by ldd, owned by a Debian package) must come from a package the Dockerfile names, or
# from libc6; ONNX Runtime travels with the binary. The build context leaves out host builds.
import re  # noqa: E402

with open(os.path.join(DEPLOY, "Dockerfile")) as f:
    dockerfile = f.read()
stages = dockerfile.split("\nFROM ")
runtime = stages[-1] if len(stages) > 1 else ""
listed = set(re.findall(r"\b(lib[a-z0-9.+-]+|zlib1g)\b", runtime.split("COPY")[0]))
# The image builds the release binary; a sanitizer build links its runtimes and every library
# without --as-needed, so it is compared only when it is the release build.
REL = BIN if "asan" not in os.path.relpath(BIN, ROOT).split(os.sep) else \
    os.path.join(ROOT, "build", "lipsync")
elf = subprocess.run(["readelf", "-d", REL], capture_output=True, text=True).stdout \
    if os.path.exists(REL) else ""
needed = re.findall(r"\(NEEDED\).*\[(.+?)\]", elf)
ldd = dict(re.findall(r"^\s*(\S+) => (\S+)", subprocess.run(["ldd", REL], capture_output=True,
                                                              text=True).stdout, re.M)) \
    if os.path.exists(REL) else {}


def owner(path):
    for p in (path, os.path.realpath(path)):
        r = subprocess.run(["dpkg", "-S", p], capture_output=True, text=True)
        if r.returncode == 0:
            return r.stdout.split(":")[0]
    return None


missing = []
for so in needed:
    if so.startswith("libonnxruntime"):
        continue
    pkg = owner(ldd[so]) if so in ldd else None
    if pkg != "libc6" and pkg not in listed:
        missing.append("%s (%s)" % (so, pkg))
if not elf:
    tap(True, "Dockerfile: the runtime stage installs the package of every library the binary "
        "links", skip="no release build/lipsync to compare (sanitizer run)")
else:
    tap(len(needed) > 5 and not missing,
        "Dockerfile: the runtime stage installs the package of every library the binary links",
        "not installed: " + ", ".join(missing))
try:
    with open(os.path.join(ROOT, ".dockerignore")) as f:
        ign = f.read().split()
except OSError:
    ign = []
tap(all(d in ign for d in ("/build/", "/third_party/", "/models/")),
    ".dockerignore leaves host builds, ONNX Runtime and models out of the build context", str(ign))
tap("USER lipsync" in runtime and "HEALTHCHECK" in runtime and "LIPSYNC_DEPS=build" in dockerfile,
    "Dockerfile: non-root user, health check, build-only dependencies")

# ---- the example config serves as shipped ----------------------------------------------------
# deploy/lipsync.yaml is what the image runs (and what README points at): from a directory with
# models/ and avatars/demo it must start, preload the demo avatar and answer, with only the port
# changed. The image's own run (docker) is recorded in docs/OPERATIONS.md.
if os.path.isdir(os.path.join(ROOT, "avatars", "demo")) and \
        os.path.isfile(os.path.join(ROOT, "models", "audio_encoder.onnx")):
    os.chdir(ROOT)
    port = free_port()
    log = os.path.join(tmpdir("lipsync-deploy-"), "serve.log")
    p, lf = serve(["--config", "deploy/lipsync.yaml", "--server.port", str(port),
                   "--server.host", "127.0.0.1"], log)

    def healthy():
        r = subprocess.run([BIN, "client", "health", "--port", str(port), "--timeout", "2000"],
                           capture_output=True, text=True)
        return r.returncode == 0

    up = wait_until(healthy, 90, p)
    lf.seek(0)
    tap(up, "deploy/lipsync.yaml: serve starts with it and answers health (demo preloaded)",
        lf.read()[-600:])
    r = subprocess.run([BIN, "client", "list", "--port", str(port)], capture_output=True,
                       text=True)
    tap(up and r.returncode == 0 and "demo" in r.stdout and "yes" in r.stdout,
        "deploy/lipsync.yaml: the demo avatar is listed as loaded", r.stdout + r.stderr)
    tap(stop(p) == 0, "deploy/lipsync.yaml: SIGTERM drains and exits 0")
else:
    tap(True, "deploy/lipsync.yaml serves", skip="models/ or avatars/demo not generated")
finish()
