"""Drives the console benchmark (see ./run): one namespace, one console, consumer throughput runs
with and without viewers, overview latency seen by the viewers. Results with the exact commands."""

import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
RELEASE = ROOT / "target" / "release"
RUNS = int(os.environ.get("BENCH_RUNS", "3"))
RECORDS = int(os.environ.get("BENCH_RECORDS", "200000"))
VIEWERS = int(os.environ.get("BENCH_VIEWERS", "20"))
INTERVAL = float(os.environ.get("BENCH_VIEW_INTERVAL", "1"))
EVENT_TYPE = os.environ.get("BENCH_EVENT_TYPE", "like.added")
GROUP = os.environ.get("BENCH_GROUP", "event-tracking")
STAMP = time.strftime("%Y%m%d-%H%M%S")
NS = f"bcon{STAMP.replace('-', '')}"
RAW = ROOT / ".stack" / "bench" / f"console-{STAMP}"
COMMANDS = []


def say(text):
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def shown(argv):
    """The command as a reader would type it: paths from the repository root, no secret."""
    text = " ".join(argv).replace(str(ROOT) + "/", "")
    secret = os.environ.get("CIRC_JWT_SECRET")
    return text.replace(secret, '"$(cat .stack/jwt-secret)"') if secret else text


def run(argv, out=None, timeout=900, env=None):
    COMMANDS.append(shown(argv))
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)
    if out:
        (RAW / out).write_text(result.stdout)
    if result.returncode != 0:
        raise SystemExit(f"{argv[0]} failed: {result.stderr[-2000:]}")
    return result.stdout


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_busy(seconds=1.0):
    def read():
        fields = [int(x) for x in open("/proc/stat").readline().split()[1:]]
        return sum(fields), fields[3] + fields[4]

    (t0, i0), _ = read(), time.sleep(seconds)
    t1, i1 = read()
    return round(100.0 * (1 - (i1 - i0) / max(1, t1 - t0)), 1)


class Viewers:
    """VIEWERS threads, each GETting the overview every INTERVAL seconds, timing every answer."""

    def __init__(self, url, token):
        self.url, self.token = url, token
        self.samples, self.errors = [], 0
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.view, daemon=True) for _ in range(VIEWERS)]

    def view(self):
        request = urllib.request.Request(self.url, headers={"authorization": f"Bearer {self.token}"})
        while not self.stop.is_set():
            started = time.perf_counter()
            try:
                with urllib.request.urlopen(request, timeout=10) as r:
                    r.read()
                    ok = r.status == 200
            except OSError:
                ok = False
            elapsed = time.perf_counter() - started
            with self.lock:
                if ok:
                    self.samples.append(elapsed * 1000)
                else:
                    self.errors += 1
            self.stop.wait(max(0.0, INTERVAL - elapsed))

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *_):
        self.stop.set()
        for t in self.threads:
            t.join()


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def throughput(label):
    out = run([str(RELEASE / "consumer-bench"), "--namespace", NS, "throughput", "--group", GROUP,
               "--count", str(RECORDS), "--run", label], out=f"{label}.json")
    return json.loads(out)


def main():
    RAW.mkdir(parents=True, exist_ok=True)
    bench = str(RELEASE / "consumer-bench")
    say(f"namespace {NS}: topics of {GROUP}, {RECORDS} {EVENT_TYPE} events")
    run([bench, "--namespace", NS, "setup", "--groups", GROUP], out="setup.json", timeout=120)
    run([bench, "--namespace", NS, "produce", "--event-type", EVENT_TYPE, "--count", str(RECORDS)],
        out="produce.json")
    secret = os.environ["CIRC_JWT_SECRET"]
    token = run([str(RELEASE / "circ"), "token", "--sub", "bench-viewer", "--role", "viewer",
                 "--secret", secret]).strip()
    port = free_port()
    env = dict(os.environ, CIRC_NAMESPACE=NS, CIRC_CONSOLE_LISTEN=f"127.0.0.1:{port}")
    COMMANDS.append(shown([f"CIRC_NAMESPACE={NS}", f"CIRC_CONSOLE_LISTEN=127.0.0.1:{port}", str(RELEASE / "console"), "&"]))
    console = subprocess.Popen([str(RELEASE / "console")], env=env, cwd=ROOT,
                               stdout=open(RAW / "console.log", "w"), stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.time() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{base}/readyz", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.time() > deadline:
                raise SystemExit("the console did not become ready")
            time.sleep(0.3)
        results = {"without": [], "with": [], "latency_ms": [], "errors": 0, "cpu_busy": {}}
        results["cpu_busy"]["idle_console"] = cpu_busy()
        for r in range(1, RUNS + 1):
            say(f"run {r}/{RUNS}: throughput without viewers")
            results["without"].append(throughput(f"alone-r{r}"))
            say(f"run {r}/{RUNS}: throughput with {VIEWERS} viewers")
            with Viewers(f"{base}/admin/circulatory/queues", token) as viewers:
                time.sleep(5)
                results["with"].append(throughput(f"viewed-r{r}"))
                time.sleep(5)
                if r == 1:
                    results["cpu_busy"]["viewers_only"] = cpu_busy()
            results["latency_ms"].extend(viewers.samples)
            results["errors"] += viewers.errors
        with urllib.request.urlopen(f"{base}/metrics", timeout=5) as m:
            (RAW / "console-metrics.txt").write_text(m.read().decode())
    finally:
        console.terminate()
        console.wait(timeout=30)
        subprocess.run([bench, "--namespace", NS, "cleanup"], capture_output=True, timeout=120)
    report(results)


def report(results):
    alone = [r["records_per_s_after_first"] for r in results["without"]]
    viewed = [r["records_per_s_after_first"] for r in results["with"]]
    lat = results["latency_ms"]
    summary = {
        "runs": RUNS, "records": RECORDS, "viewers": VIEWERS, "interval_s": INTERVAL,
        "throughput_alone_median": statistics.median(alone),
        "throughput_viewed_median": statistics.median(viewed),
        "throughput_ratio": statistics.median(viewed) / statistics.median(alone),
        "throughput_alone": alone, "throughput_viewed": viewed,
        "overview_requests": len(lat), "overview_errors": results["errors"],
        "overview_p50_ms": percentile(lat, 50), "overview_p99_ms": percentile(lat, 99),
        "overview_max_ms": max(lat), "cpu_busy_percent": results["cpu_busy"],
        "commands": COMMANDS, "raw": str(RAW.relative_to(ROOT)),
    }
    out = ROOT / "scripts" / "bench" / "console"
    (out / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    lines = [
        "# Console benchmark",
        "",
        f"Run {STAMP} on this machine (2 cores shared by the broker, registry, Redis, PostgreSQL, the "
        "console, the viewers and the consumer under test; no CPU pinning). Reproduce with "
        "`scripts/bench/console/run`.",
        "",
        f"- Overview (`GET /admin/circulatory/queues`, all groups) under {VIEWERS} viewers refreshing "
        f"every {INTERVAL:g} s: **p50 {summary['overview_p50_ms']:.1f} ms, p99 "
        f"{summary['overview_p99_ms']:.1f} ms** (max {summary['overview_max_ms']:.1f} ms) over "
        f"{len(lat)} requests, {results['errors']} errors. Target: p99 < 100 ms.",
        f"- Consumer throughput ({GROUP}, no-op handlers, {RECORDS} records, medians of {RUNS}): "
        f"{summary['throughput_alone_median']:,.0f} records/s alone, "
        f"{summary['throughput_viewed_median']:,.0f} with the viewers: "
        f"**{summary['throughput_ratio']:.2f}×** (per run alone "
        + ", ".join(f"{v:,.0f}" for v in alone) + "; viewed " + ", ".join(f"{v:,.0f}" for v in viewed) + ").",
        f"- Machine busy share: {results['cpu_busy']}.",
        "",
        "The console reads the cluster once per refresh (2 s) whatever the number of viewers; the "
        "viewers read that view. Raw outputs: `" + summary["raw"] + "`.",
        "",
        "Commands:",
        "",
        "```",
        *COMMANDS,
        "```",
        "",
    ]
    (out / "results.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
