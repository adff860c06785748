"""Where the Swarm gateway's path loses against the direct server (#21): the same digits
request at concurrency 32 from hey, in 8 s turns, (1) to TorchServe on the host, (2) through
the Swarm gateway, (3) from inside the gateway container's network namespace straight to the
replica over the overlay network (no HAProxy, no published port); with the host's CPU per
request from /proc/stat (user, system, softirq). Then the same with the stack's Prometheus
scaled to zero. Run from the repository root as root, with the archives built:

    PYTHONPATH=. .venv/bin/python notes/deployment_scripts/swarm_paths.py

Uses bench.deployments' direct server and Swarm stack (one replica); removes them afterwards.
"""

import subprocess, sys, time, json
from pathlib import Path
from bench import deployments as d
from bench.points import hey
from tsforge.deploy import containers
from tsforge.deploy.containers import docker

def stat():
    f = open("/proc/stat").readline().split()[1:]
    v = list(map(int, f))  # user nice system idle iowait irq softirq steal
    return v

def run(name, cmd_prefix, url, body, key, secs=8):
    a = stat()
    cmd = [*cmd_prefix, "hey", "-z", f"{secs}s", "-c", "32", "-m", "POST", "-T", ctype, "-D", str(body),
           "-H", f"Authorization: Bearer {key}", url]
    out = subprocess.run(cmd, capture_output=True, text=True).stdout
    b = stat()
    dv = [y - x for x, y in zip(a, b)]
    rps = float(next(l for l in out.splitlines() if "Requests/sec" in l).split()[-1])
    codes = [l.strip() for l in out.splitlines() if "responses" in l]
    n = rps * secs
    per = lambda i: dv[i] * 10 / n  # jiffies (10 ms) -> ms per request
    print(f"{name:18s} {rps:7.0f}/s  user {per(0)+per(1):.3f} sys {per(2):.3f} softirq {per(6):.3f} idle {per(3):.3f} ms/req {codes}", flush=True)
    return rps

body = Path("examples/mnist-0.png")
ctype = "image/png"
containers.ensure_engine()
images, _ = containers.build_all(say=print)
with d.direct() as (hurl, hkey):
    with d.swarm(images) as (gurl, gkey):
        gw = docker("ps", "-q", "--filter", "name=tsforgebench_gateway").stdout.split()[0]
        rep = docker("ps", "-q", "--filter", "name=tsforgebench_torchserve").stdout.split()[0]
        gpid = docker("inspect", "-f", "{{.State.Pid}}", gw).stdout.strip()
        rip = json.loads(docker("inspect", "-f", "{{json .NetworkSettings.Networks}}", rep).stdout)["tsforgebench_backend"]["IPAddress"]
        rurl = f"http://{rip}:8080/predictions/digits"
        print("replica", rip, "gateway pid", gpid)
        for u, k, pre in ((hurl, hkey, []), (gurl, gkey, []), (rurl, "x", ["nsenter", "-t", gpid, "-n"])):
            subprocess.run([*pre, "hey", "-z", "15s", "-c", "32", "-m", "POST", "-T", ctype, "-D", str(body), "-H", f"Authorization: Bearer {k}", u], capture_output=True)
        for variant in ("as shipped", "no prometheus"):
            if variant == "no prometheus":
                docker("service", "scale", "tsforgebench_prometheus=0")
                time.sleep(5)
            print("==", variant)
            for r in range(2):
                run("direct", [], hurl, body, hkey)
                run("swarm gateway", [], gurl, body, gkey)
                run("overlay to replica", ["nsenter", "-t", gpid, "-n"], rurl, body, "x")
