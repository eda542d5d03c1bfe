#!/usr/bin/env python3
"""Helpers of scripts/bench/peers/run (standard library only).

  report.py bridge-bodies SINGLE BATCH KEY OUT_SINGLE OUT_BATCH
      the ingest's bodies (one event a line; one JSON array a line) as the bridge's JSON embedded
      format: {"records": [{"key": data[KEY], "value": event}, ...]}
  report.py render RAW_DIR MD_OUT JSON_OUT
      medians of the runs listed in RAW_DIR/measurements.tsv -> results.md and results.json
"""

import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from reporting import dispatch, read_meta  # noqa: E402  (scripts/bench/reporting.py)

CLK_TCK = os.sysconf("SC_CLK_TCK")
INGEST = "ingest"
BARE = "bare"


# ---- bodies -------------------------------------------------------------------------------------------
def record(event, key):
    return {"key": str(event.get("data", {}).get(key, "")), "value": event}


def cmd_bridge_bodies(single, batch, key, out_single, out_batch):
    with open(single, encoding="utf-8") as src, open(out_single, "w", encoding="utf-8") as out:
        for line in src:
            if line.strip():
                doc = {"records": [record(json.loads(line), key)]}
                out.write(json.dumps(doc, separators=(",", ":")) + "\n")
    with open(batch, encoding="utf-8") as src, open(out_batch, "w", encoding="utf-8") as out:
        for line in src:
            if line.strip():
                doc = {"records": [record(e, key) for e in json.loads(line)]}
                out.write(json.dumps(doc, separators=(",", ":")) + "\n")


# ---- reading a run --------------------------------------------------------------------------------------
def load(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def ticks_delta(path):
    """{role: CPU seconds} between the two snapshots of a .ticks file, plus the machine's busy
    share of all CPUs over the interval. A role at 0 ticks afterwards (its process gone) is left out."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = [line.split() for line in f if line.strip()]
    except OSError:
        return {}
    if len(lines) < 2:
        return {}
    before = dict(p.split("=", 1) for p in lines[0])
    after = dict(p.split("=", 1) for p in lines[-1])
    out = {}
    for role, value in after.items():
        if role == "machine":
            b0, i0 = (float(x) for x in before[role].split(":"))
            b1, i1 = (float(x) for x in value.split(":"))
            total = (b1 - b0) + (i1 - i0)
            out["machine_busy_pct"] = round(100 * (b1 - b0) / total, 1) if total > 0 else None
        elif role in before and float(value) > 0 and float(value) >= float(before[role]):
            out[role] = (float(value) - float(before[role])) / CLK_TCK
    return out


def read_measurements(raw):
    rows = []
    with open(os.path.join(raw, "measurements.tsv"), encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            run, subject, kind, rate, name, per_request = line.rstrip("\n").split("\t")
            rows.append({"run": int(run), "subject": subject, "kind": kind, "rate": rate,
                         "name": name, "events_per_request": int(per_request)})
    return rows


def with_cpu(raw, row, suffix):
    """The run's document (RAW/<name><suffix>) and its CPU seconds per role; (None, {}) if absent."""
    doc = load(os.path.join(raw, row["name"] + suffix))
    cpu = ticks_delta(os.path.join(raw, row["name"] + ".ticks")) if doc is not None else {}
    return doc, cpu


def http_figures(raw, row):
    summary, cpu = with_cpu(raw, row, ".summary.json")
    if summary is None:
        return None
    ok = summary["ok"]
    per = row["events_per_request"]
    out = {
        "requests_per_s": summary["ok_rps"],
        "events_per_s": summary["ok_rps"] * per,
        "p50_ms": summary["p50_ms"],
        "p99_ms": summary["p99_ms"],
        "all_accepted": summary["all_accepted"] and ok > 0,
        "cut_at_deadline": summary.get("aborted_at_deadline"),
        "statuses": summary["statuses"],
        "errors": summary["errors"],
        "machine_busy_pct": cpu.pop("machine_busy_pct", None),
    }
    for role, seconds in cpu.items():
        out[f"cpu_us_per_request_{role}"] = round(seconds * 1e6 / ok, 1) if ok else None
        out[f"cpu_us_per_event_{role}"] = round(seconds * 1e6 / (ok * per), 2) if ok else None
    return out


def drain_figures(raw, row):
    doc, cpu = with_cpu(raw, row, ".json")
    if doc is None:
        return None
    jobs = doc.get("jobs") or doc.get("handled") or doc.get("count") or doc.get("records")
    out = {
        "per_s": doc.get("jobs_per_s", doc.get("records_per_s")),
        "per_s_after_first": doc.get("jobs_per_s_after_first", doc.get("records_per_s_after_first")),
        "jobs": jobs,
        "machine_busy_pct": cpu.pop("machine_busy_pct", None),
    }
    if doc.get("worker_cpu_us") is not None and jobs:
        out["cpu_us_per_job_worker"] = round(doc["worker_cpu_us"] / jobs, 2)
    for role, seconds in cpu.items():
        out[f"cpu_us_per_job_{role}"] = round(seconds * 1e6 / jobs, 2) if jobs else None
    return out


# ---- medians and ratios -----------------------------------------------------------------------------------
def median_of(docs):
    """Median of every numeric field over the runs' figures; booleans: all of them."""
    docs = [d for d in docs if d]
    if not docs:
        return None
    out = {}
    for key in docs[0]:
        values = [d.get(key) for d in docs]
        if all(isinstance(v, bool) for v in values):
            out[key] = all(values)
        elif all(isinstance(v, (int, float)) for v in values if v is not None):
            present = [v for v in values if v is not None]
            out[key] = round(statistics.median(present), 3) if present else None
    out["runs"] = len(docs)
    return out


def ratio(a, b):
    return round(a / b, 3) if a is not None and b else None


def summarize(raw):
    rows = read_measurements(raw)
    groups = {}
    for row in rows:
        figures = drain_figures(raw, row) if row["kind"] == "drain" else http_figures(raw, row)
        key = (row["kind"], row["rate"], row["subject"])
        groups.setdefault(key, []).append({"run": row["run"], **(figures or {"missing": True})})
    medians = {}
    for (kind, rate, subject), runs in groups.items():
        label = kind if rate == "-" else f"{kind}@{rate}"
        medians.setdefault(label, {})[subject] = {"median": median_of(runs), "runs": runs}
    return medians


def ratios(medians):
    """ingest / peer for each measurement both have: throughput (above 1: the ingest does more),
    latency and CPU (below 1: the ingest is faster, cheaper). CPU: the server processes' time per
    event (per job for the workers), the broker left out on both sides."""
    out = {}
    for label, subjects in medians.items():
        ingest = (subjects.get(INGEST) or {}).get("median")
        if not ingest:
            continue
        if label == "drain":
            fields, unit = ["per_s", "per_s_after_first"], "job"
        else:
            fields = ["events_per_s" if label == "batch_max" else "requests_per_s", "p50_ms", "p99_ms"]
            unit = "event"
        for subject, doc in subjects.items():
            peer = doc.get("median")
            if subject == INGEST or not peer:
                continue
            r = {f: ratio(ingest.get(f), peer.get(f)) for f in fields}
            r[f"cpu_us_per_{unit}"] = ratio(cpu_sum(ingest, unit), cpu_sum(peer, unit))
            out.setdefault(label, {})[subject] = {k: v for k, v in r.items() if v is not None}
    return out


def beyond_bare(medians):
    """What the ingest does beyond bare-produce, for each measurement both have: its requests/s as
    a share of the floor's, and the CPU µs per request its own process spends beyond bare-produce's
    (the broker left out on both sides)."""
    out = {}
    for label, subjects in medians.items():
        ingest = (subjects.get(INGEST) or {}).get("median")
        bare = (subjects.get(BARE) or {}).get("median")
        if not ingest or not bare:
            continue
        own, floor = ingest.get("cpu_us_per_request_ingest"), bare.get("cpu_us_per_request_bare")
        out[label] = {
            "requests_per_s_share": ratio(ingest.get("requests_per_s"), bare.get("requests_per_s")),
            "extra_cpu_us_per_request": round(own - floor, 1) if own is not None and floor is not None
            else None,
        }
    return out


def cpu_sum(doc, unit):
    values = [v for k, v in doc.items() if k.startswith(f"cpu_us_per_{unit}_")
              and not k.endswith("_kafka") and v is not None]
    return sum(values) if values else None


# ---- render -------------------------------------------------------------------------------------------

def fmt(value, digits=0):
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return f"{value:,.{digits}f}"


def cpu_text(doc, unit="request"):
    parts = []
    for key, value in sorted(doc.items()):
        prefix = f"cpu_us_per_{unit}_"
        if key.startswith(prefix) and value is not None:
            parts.append(f"{key[len(prefix):]} {fmt(value, 1)}")
    return ", ".join(parts) or "–"


def order(subjects):
    return sorted(subjects, key=lambda s: (s != INGEST, s))


def http_table(w, medians, label, title, unit="request"):
    subjects = medians.get(label)
    if not subjects:
        return
    w(f"\n### {title}\n")
    w(f"| Subject | requests/s | events/s | p50 ms | p99 ms | CPU µs per {unit} | all 2xx | cut at end | runs |")
    w("|---|---:|---:|---:|---:|---|---|---:|---:|")
    for subject in order(subjects):
        m = subjects[subject]["median"] or {}
        w(f"| {subject} | {fmt(m.get('requests_per_s'))} | {fmt(m.get('events_per_s'))} | "
          f"{fmt(m.get('p50_ms'), 2)} | {fmt(m.get('p99_ms'), 2)} | {cpu_text(m, unit)} | "
          f"{fmt(m.get('all_accepted'))} | {fmt(m.get('cut_at_deadline'))} | {m.get('runs', 0)} |")


def render(raw, md_out, json_out):
    meta = read_meta(raw)
    medians = summarize(raw)
    rel = ratios(medians)
    floor = beyond_bare(medians)
    doc = {"meta": meta, "medians": medians, "ratios_ingest_over_peer": rel, "beyond_bare": floor}
    with open(json_out, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=2, sort_keys=True)
        f.write("\n")

    lines = []
    w = lines.append
    w("# The ingest beside its peers: the HTTP → Kafka floor, the seed's BullMQ design, the Kafka HTTP bridge\n")
    w(f"Generated by `scripts/bench/peers/run` on {meta.get('date')}. Machine-readable: "
      f"[`results.json`](results.json). Raw outputs: `{meta.get('raw')}` (not in git).")
    if meta.get("smoke") == "1":
        w("\n**Smoke-size run** (BENCH_RUNS={runs}, BENCH_DURATION={duration} s, {drain} drain jobs): "
          "it shows the harness works end to end; its figures are not a benchmark result.".format(
              runs=meta.get("runs"), duration=meta.get("duration"), drain=meta.get("drain_jobs")))
    w("\n## Subjects\n")
    w(f"- `ingest`: a dedicated `target/release/ingest` (scripts/up's environment, rate limit raised, "
      f"namespace `{meta.get('namespace')}`, topic `{meta.get('topic')}` with {meta.get('partitions')} "
      "partitions); JWT check, Avro validation and encoding, acks=all before 202. CPU roles: `ingest`, "
      "and `kafka` (the broker, shown apart, not counted in the ratio).")
    measured = {subject for subjects in medians.values() for subject in subjects}
    if BARE in measured:
        w(f"- `bare`: `target/release/bare-produce` (topic `{meta.get('bare_topic')}`, throwaway): the "
          "body produced unchanged as one record, no key, with the ingest's producer (acks=all, "
          "idempotence, its compression, linger and delivery timeout), allocator and runtime; 202 after "
          "the ack. No auth, no JSON parsing, no validation, no Avro, no headers: the floor of HTTP → "
          "Kafka with an acknowledgement on this machine. Single events only (a batch body would be one "
          "record). CPU roles: `bare`, and `kafka`.")
    if any(subject.startswith("bullmq-") for subject in measured):
        w("- `bullmq-aof` / `bullmq-none`: `bullmq/server.mjs` (Node's http module; `queue.add` / "
          "`queue.addBulk` with attempts 5, exponential backoff 2 s; 202 when Redis has the job) on a "
          "redis-server of its own: `--appendonly yes --appendfsync everysec` (durable) or "
          "`--appendonly no` (no persistence); RDB snapshots off in both. No token check, no schema "
          "validation. CPU roles: `node` and `redis`. Redis is emptied (FLUSHALL) before each measurement.")
    if meta.get("bridge_missing"):
        w(f"- `bridge`: **not measured**: {meta['bridge_missing']}")
    else:
        w(f"- `bridge`: Kafka HTTP bridge {meta.get('bridge_version')} from its jars, producer acks=all, "
          f"idempotence, zstd, linger.ms {meta.get('linger_ms')} (the ingest's); JSON embedded format, "
          f"topic `{meta.get('bridge_topic')}` ({meta.get('partitions')} partitions, throwaway). "
          f"No schema validation, no auth. Jars: `{meta.get('bridge_lib')}` (from "
          f"{meta.get('bridge_source', 'Maven Central')}"
          + ("; Maven Central as this machine reaches it serves no `io.strimzi:kafka-bridge`, so "
             "these jars are a build of the bridge's release from its public source, kept outside "
             "the repository" if meta.get("bridge_source") == "BENCH_BRIDGE_HOME" else "")
          + "). CPU roles: `bridge`, and "
          "`kafka`. The bridge opens a Kafka producer for each HTTP connection, on that connection's "
          "first request, so every load-generator run starts by opening one producer per connection "
          f"({meta.get('concurrency')} for the single-event maximum): in short runs that start weighs "
          "on its figures.")

    w("\n## Results (medians)\n")
    w("Ratios are ingest / peer: above 1 for throughput means the ingest does more; below 1 for "
      "latency and CPU means the ingest is faster or cheaper. CPU is utime + stime of each server "
      "process (/proc/<pid>/stat) over the measurement, divided by the accepted requests. \"all 2xx\": "
      "every answer was 200/202 (and there was one); \"cut at end\": requests still in flight when oha "
      "stopped at its deadline (not failures, not counted).")
    http_table(w, medians, "single_max",
               f"Single-event maximum ({meta.get('concurrency')} connections)")
    http_table(w, medians, "single_few",
               f"Single-event maximum, few connections ({meta.get('few_concurrency')})")
    http_table(w, medians, "batch_max",
               f"Batch maximum ({meta.get('batch')} events per request, {meta.get('batch_concurrency')} "
               "connections)", unit="event")
    for label in sorted((k for k in medians if k.startswith("at_rate@")),
                        key=lambda k: int(k.split("@")[1])):
        rate = label.split("@")[1]
        extra = " (half the bridge's maximum)" if rate == meta.get("bridge_half_rate") else ""
        http_table(w, medians, label, f"Fixed offered rate {int(rate):,}/s{extra}, "
                   f"{meta.get('rate_concurrency')} connections, latency-corrected")
    drains = medians.get("drain")
    if drains:
        w(f"\n### Worker throughput ({meta.get('drain_jobs')} jobs or events already queued)\n")
        w("| Subject | per s | per s after the first | CPU µs per job | runs |")
        w("|---|---:|---:|---|---:|")
        for subject in order(drains):
            m = drains[subject]["median"] or {}
            w(f"| {subject} | {fmt(m.get('per_s'))} | {fmt(m.get('per_s_after_first'))} | "
              f"{cpu_text(m, 'job')} | {m.get('runs', 0)} |")
        w(f"\n`ingest` here is `target/release/consumer-bench throughput --group {meta.get('drain_group')}`"
          " (the no-op group of scripts/bench/consumer/run: at-least-once, offsets committed) over the same "
          "number of events; the BullMQ rows are `bullmq/worker.mjs` (no-op processor, concurrency 50) "
          "after `bullmq/fill.mjs` queued the jobs.")

    w("\n### Ratios ingest / peer\n")
    w("| Measurement | Peer | Ratios |")
    w("|---|---|---|")
    for label in sorted(rel):
        for subject in sorted(rel[label]):
            text = ", ".join(f"{k} {v:g}×" for k, v in rel[label][subject].items())
            w(f"| {label} | {subject} | {text or '–'} |")

    if floor:
        w("\n### The ingest beyond the floor (bare-produce)\n")
        w("| Measurement | ingest requests/s ÷ bare's | ingest CPU µs per request beyond bare's |")
        w("|---|---:|---:|")
        for label in sorted(floor):
            w(f"| {label} | {fmt(floor[label]['requests_per_s_share'], 3)} | "
              f"{fmt(floor[label]['extra_cpu_us_per_request'], 1)} |")

    w("\n## Setup\n")
    w(f"- Machine: {meta.get('nproc')} CPUs ({meta.get('cpu')}), {meta.get('memory')}, {meta.get('kernel')}. "
      f"Background load with nothing measured: {meta.get('background_before')} % before, "
      f"{meta.get('background_after')} % after; load average at the end {meta.get('loadavg')}.")
    w(f"- Sharing the CPUs: {meta.get('sharing')}. Top processes before and after: "
      "`processes-before.txt`, `processes-after.txt` in the raw folder.")
    w(f"- Versions: node {meta.get('node')}; bullmq {meta.get('bullmq')}; ioredis {meta.get('ioredis')}; "
      f"redis-server {meta.get('redis')}; bridge {meta.get('bridge_version') or '–'} "
      f"({meta.get('bridge_java') or '–'}); kafka {meta.get('kafka')}; oha {meta.get('oha')}; "
      f"commit {meta.get('commit')}.")
    w(f"- Load: oha, {meta.get('duration')} s per measurement, the same bodies for all "
      f"(`{meta.get('event_type')}`: 1000 single events, 20 batches of {meta.get('batch')}; the bridge's "
      "wrap the same events as `{\"records\":[{\"key\":<partition key>,\"value\":<event>}]}`). "
      f"{meta.get('runs')} runs; the order of the subjects rotates each run.")

    w("\n## Every run\n")
    w("| Measurement | Subject | Run | requests/s or per s | p50 ms | p99 ms |")
    w("|---|---|---:|---:|---:|---:|")
    for label in sorted(medians):
        for subject in order(medians[label]):
            for r in medians[label][subject]["runs"]:
                w(f"| {label} | {subject} | {r['run']} | "
                  f"{fmt(r.get('requests_per_s', r.get('per_s')))} | {fmt(r.get('p50_ms'), 2)} | "
                  f"{fmt(r.get('p99_ms'), 2)} |")

    w("\n## Commands\n")
    with open(os.path.join(raw, "commands.sh"), encoding="utf-8") as f:
        w("```sh\n" + f.read().rstrip("\n") + "\n```")
    with open(md_out, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    dispatch(sys.argv, {"bridge-bodies": (cmd_bridge_bodies, 5), "render": (render, 3)}, __doc__)
