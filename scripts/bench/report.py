#!/usr/bin/env python3
"""Helpers of scripts/bench/ingest (standard library only).

  report.py bodies SCHEMAS TYPE N SINGLE_OUT BATCH_OUT   request bodies for TYPE, from its Avro schema
  report.py oha FILE                                     one oha JSON result -> compact summary (stdout)
  report.py pp FILE                                      one ProducerPerformance output -> summary
  report.py render RAW_DIR MD_OUT JSON_OUT               medians, ratios, verdicts -> results files
"""

import glob
import json
import os
import statistics
import sys
import uuid

from reporting import dispatch, read_meta  # scripts/bench/reporting.py, beside this file

# The targets of the issue; do not tune them to the results.
TARGET_BATCH_VS_PP = 0.8
TARGET_SINGLE_VS_BARE = 0.5
TARGET_P99_MS = 10.0
TARGET_RSS_MIB = 64.0

LIKED_AT = "2025-01-01T12:00:00Z"


# ---- bodies -------------------------------------------------------------------------------------------
def sample(schema, named):
    """A valid JSON value (the API's JSON form of Avro) for an Avro schema."""
    if isinstance(schema, list):  # union: null when allowed, else the first branch
        return None if "null" in schema else sample(schema[0], named)
    if isinstance(schema, str):
        if schema in named:
            return sample(named[schema], named)
        return {"null": None, "boolean": True, "int": 7, "long": 42_000, "float": 1.5,
                "double": 1.5, "string": "bench", "bytes": ""}[schema]
    kind, logical = schema["type"], schema.get("logicalType")
    if "name" in schema:
        named[schema["name"]] = schema
        named[f'{schema.get("namespace", "")}.{schema["name"]}'] = schema
    if logical == "uuid":
        return str(uuid.uuid4())
    if logical in ("timestamp-millis", "timestamp-micros"):
        return LIKED_AT
    if kind == "record":
        return {f["name"]: sample(f["type"], named) for f in schema["fields"]}
    if kind == "enum":
        return schema["symbols"][0]
    if kind == "array":
        return []
    if kind == "map":
        return {}
    return sample(kind, named)


def cmd_bodies(schemas, event_type, n, single_out, batch_out):
    """SINGLE_OUT: 1000 lines, one event each (`-`: none); BATCH_OUT: 20 lines, N events each
    (oha -Z picks a line at random per request, so partition keys vary like real traffic)."""
    paths = glob.glob(os.path.join(schemas, "*", f"{event_type}.avsc"))
    if len(paths) != 1:
        sys.exit(f"report.py: no single schema for {event_type} under {schemas}")
    with open(paths[0], encoding="utf-8") as f:
        schema = json.load(f)

    # No `id`: the ingest generates one, and no idempotency key is involved.
    def event():
        return {"type": event_type, "data": sample(schema, {})}

    if single_out != "-":
        with open(single_out, "w", encoding="utf-8") as f:
            for _ in range(1000):
                f.write(json.dumps(event(), separators=(",", ":")) + "\n")
    with open(batch_out, "w", encoding="utf-8") as f:
        for _ in range(20):
            f.write(json.dumps([event() for _ in range(int(n))], separators=(",", ":")) + "\n")


# ---- CPU split ------------------------------------------------------------------------------------------
def cpu_split(path):
    """Cores used by the ingest, bare-http and the broker, and the machine's busy share, between the
    two snapshots of a .cpu file (ticks: ingest bare kafka busy idle)."""
    try:
        with open(path, encoding="utf-8") as f:
            before, after = [[float(x) for x in line.split()] for line in f if line.strip()][:2]
    except (OSError, ValueError):
        return None
    d = [max(0.0, b - a) for a, b in zip(before, after)]
    machine = d[3] + d[4]
    if machine <= 0:
        return None
    cpus = os.cpu_count() or 1
    # ticks of all CPUs over the interval: machine ticks; cores = share * cpus
    return {
        "ingest_cores": round(d[0] / machine * cpus, 2),
        "bare_cores": round(d[1] / machine * cpus, 2),
        "kafka_cores": round(d[2] / machine * cpus, 2),
        "machine_busy_pct": round(d[3] / machine * 100, 1),
    }


# ---- oha ------------------------------------------------------------------------------------------------
def cmd_oha(path):
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    summary = doc["summary"]
    statuses = {str(k): int(v) for k, v in (doc.get("statusCodeDistribution") or {}).items()}
    errors = {str(k): int(v) for k, v in (doc.get("errorDistribution") or {}).items()}
    # Requests still in flight at the deadline are cancelled by oha; they are not failures.
    real_errors = {k: v for k, v in errors.items() if "deadline" not in k}
    ok = sum(v for k, v in statuses.items() if k in ("200", "202"))
    elapsed = float(summary["total"])
    # Latency of the accepted requests only (--stats-success-breakdown): a fast 503 is no latency.
    pct = doc.get("latencyPercentilesSuccessful") or doc.get("latencyPercentiles") or {}

    def ms(key):
        value = pct.get(key)
        return None if value is None else round(float(value) * 1000, 3)

    out = {
        "ok": ok,
        "statuses": statuses,
        "errors": real_errors,
        "aborted_at_deadline": sum(errors.values()) - sum(real_errors.values()),
        "all_accepted": ok == sum(statuses.values()) and not real_errors,
        "elapsed_s": round(elapsed, 3),
        "ok_rps": round(ok / elapsed, 1) if elapsed > 0 else 0.0,
        "p50_ms": ms("p50"),
        "p90_ms": ms("p90"),
        "p99_ms": ms("p99"),
        "p99_9_ms": ms("p99.9"),
        "mean_ms": round(float(summary.get("average") or 0) * 1000, 3),
        "raw": os.path.basename(path),
        "cpu": cpu_split(os.path.splitext(path)[0] + ".cpu"),
    }
    print(json.dumps(out))


# ---- ProducerPerformance --------------------------------------------------------------------------------
def cmd_pp(path):
    """The last summary line: `N records sent, X records/sec (Y MB/sec), A ms avg latency, ...`."""
    with open(path, encoding="utf-8") as f:
        lines = [line for line in f if "records sent" in line and "50th" in line]
    if not lines:
        sys.exit(f"report.py: no ProducerPerformance summary in {path}")
    parts = [p.strip() for p in lines[-1].split(",")]

    def number(prefix_index):
        return float(parts[prefix_index].split()[0])

    out = {
        "records": int(number(0)),
        "records_per_s": number(1),
        "mb_per_s": float(parts[1].split("(")[1].split()[0]),
        "avg_ms": number(2),
        "max_ms": number(3),
        "p50_ms": number(4),
        "p95_ms": number(5),
        "p99_ms": number(6),
        "raw": os.path.basename(path),
        "cpu": cpu_split(os.path.splitext(path)[0] + ".cpu"),
    }
    print(json.dumps(out))


# ---- render -------------------------------------------------------------------------------------------
def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(value, digits=0):
    if value is None:
        return "–"
    if isinstance(value, float) and digits:
        return f"{value:,.{digits}f}"
    return f"{value:,.0f}"



def proc_status(raw):
    values = {}
    with open(os.path.join(raw, "ingest-status.txt"), encoding="utf-8") as f:
        for line in f:
            key, _, rest = line.partition(":")
            values[key] = int(rest.split()[0]) / 1024  # kB -> MiB
    return values


def histogram_mean(raw, metric):
    """Mean of a Prometheus histogram (all label sets) from the scraped /metrics, in ms."""
    total = count = 0.0
    with open(os.path.join(raw, "ingest-metrics.txt"), encoding="utf-8") as f:
        for line in f:
            if line.startswith(metric + "_sum"):
                total += float(line.split()[-1])
            elif line.startswith(metric + "_count"):
                count += float(line.split()[-1])
    return (total / count * 1000, int(count)) if count else (None, 0)


def histogram_quantile(raw, metric, q):
    """Upper bound of the bucket holding quantile q (all label sets summed), in ms."""
    buckets = {}
    with open(os.path.join(raw, "ingest-metrics.txt"), encoding="utf-8") as f:
        for line in f:
            if line.startswith(metric + "_bucket"):
                le = line.split('le="')[1].split('"')[0]
                bound = float("inf") if le == "+Inf" else float(le)
                buckets[bound] = buckets.get(bound, 0.0) + float(line.split()[-1])
    if not buckets:
        return None
    bounds = sorted(buckets)
    total = buckets[bounds[-1]]
    for bound in bounds:
        if buckets[bound] >= q * total:
            return bound * 1000
    return None


def verdict(ok):
    return "**met**" if ok else "**not met**"


def cmd_render(raw, md_out, json_out):
    meta = read_meta(raw)
    with open(os.path.join(raw, "runs.jsonl"), encoding="utf-8") as f:
        runs = [json.loads(line) for line in f if line.strip()]
    batch = int(meta["batch"])
    small_batch = int(meta.get("small_batch", 0))
    rates = list(runs[0]["fixed"].keys())
    extra_rates = rates[1:]

    per_run = []
    for r in runs:
        half = r["fixed"][str(r["half_rate"])]
        row = {
            "run": r["run"],
            "pp_records_per_s": r["producer_perf"]["records_per_s"],
            "pp_p99_ms": r["producer_perf"]["p99_ms"],
            "pp_value_records_per_s": (r.get("producer_perf_value_only") or {}).get("records_per_s"),
            "batch_requests_per_s": r["batch_max"]["ok_rps"],
            "batch_events_per_s": r["batch_max"]["ok_rps"] * batch,
            "batch_p99_ms": r["batch_max"]["p99_ms"],
            "batch_small_events_per_s": (r["batch_small_max"]["ok_rps"] * small_batch
                                         if "batch_small_max" in r else None),
            "single_events_per_s": r["single_max"]["ok_rps"],
            "single_p99_ms": r["single_max"]["p99_ms"],
            "bare_requests_per_s": r["bare_max"]["ok_rps"],
            "half_rate": r["half_rate"],
            "half_ingest_p50_ms": half["ingest"]["p50_ms"],
            "half_ingest_p90_ms": half["ingest"]["p90_ms"],
            "half_ingest_p99_ms": half["ingest"]["p99_ms"],
            "half_ingest_achieved": half["ingest"]["ok_rps"],
            "half_bare_p50_ms": half["bare"]["p50_ms"],
            "half_bare_p90_ms": half["bare"]["p90_ms"],
            "half_bare_p99_ms": half["bare"]["p99_ms"],
            "batch_half_rate": r["batch_half_rate"],
            "batch_half_p50_ms": r["batch_at_half"]["p50_ms"],
            "batch_half_p90_ms": r["batch_at_half"]["p90_ms"],
            "batch_half_p99_ms": r["batch_at_half"]["p99_ms"],
            "background_pct": r.get("background_pct"),
            "half_pp_p50_ms": (r.get("pp_at_half") or {}).get("p50_ms"),
            "half_pp_p95_ms": (r.get("pp_at_half") or {}).get("p95_ms"),
            "half_pp_p99_ms": (r.get("pp_at_half") or {}).get("p99_ms"),
        }
        for rate in extra_rates:
            for side in ("ingest", "bare"):
                for p in ("p50", "p90", "p99"):
                    row[f"at{rate}_{side}_{p}_ms"] = r["fixed"][rate][side][f"{p}_ms"]
            row[f"at{rate}_ingest_achieved"] = r["fixed"][rate]["ingest"]["ok_rps"]
        row["batch_vs_pp"] = row["batch_events_per_s"] / row["pp_records_per_s"]
        row["batch_vs_pp_value"] = (row["batch_events_per_s"] / row["pp_value_records_per_s"]
                                    if row["pp_value_records_per_s"] else None)
        row["single_vs_bare"] = row["single_events_per_s"] / row["bare_requests_per_s"]
        row["all_accepted"] = all(
            x["all_accepted"]
            for x in [r["batch_max"], r["single_max"], r["bare_max"], r["batch_at_half"]]
            + ([r["batch_small_max"]] if "batch_small_max" in r else [])
            + [v for f in r["fixed"].values() for v in f.values()]
        )
        per_run.append(row)

    # Medians over the runs in which every response was 202; a run with failures (a broker
    # restart, shedding) is shown below but does not count, unless no run is clean.
    valid = [row for row in per_run if row["all_accepted"]] or per_run
    excluded = [row["run"] for row in per_run if row not in valid]
    med = {k: median([row[k] for row in valid]) for k in per_run[0]
           if k not in ("run", "all_accepted", "background_pct")
           and all(row[k] is not None for row in valid)}
    # Ratios of medians (reported) and medians of per-run ratios (for reference).
    ratio_batch = med["batch_events_per_s"] / med["pp_records_per_s"]
    ratio_single = med["single_events_per_s"] / med["bare_requests_per_s"]
    ratio_batch_value = (med["batch_events_per_s"] / med["pp_value_records_per_s"]
                         if med.get("pp_value_records_per_s") else None)
    record_bytes = meta.get("record_bytes", meta["value_bytes"])
    status = proc_status(raw)
    hwm, rss = status.get("VmHWM"), status.get("VmRSS")
    produce_metric = "circulatory_produce_duration_seconds"
    produce_mean, produce_count = histogram_mean(raw, produce_metric)
    produce_p50 = histogram_quantile(raw, produce_metric, 0.5)
    produce_p99 = histogram_quantile(raw, produce_metric, 0.99)
    all_accepted = all(row["all_accepted"] for row in per_run)

    targets = [
        (f"Batch ingest ≥ 0.8 × ProducerPerformance records/s at the same record size "
         f"({record_bytes} bytes: key + value + headers)",
         f"{ratio_batch:.2f}×"
         + (f" ({ratio_batch_value:.2f}× ProducerPerformance with records of the value alone, "
            f"{meta['value_bytes']} bytes)" if ratio_batch_value is not None else ""),
         ratio_batch >= TARGET_BATCH_VS_PP),
        ("Single-event ingest ≥ 0.5 × bare axum handler",
         f"{ratio_single:.2f}×", ratio_single >= TARGET_SINGLE_VS_BARE),
        (f"p99 at half the single-event max rate (median {fmt(med['half_rate'])}/s) ≤ 10 ms",
         f"{med['half_ingest_p99_ms']:.2f} ms"
         + (f" (ProducerPerformance at the same rate: {fmt(med['half_pp_p99_ms'])} ms)"
            if med.get("half_pp_p99_ms") is not None else ""),
         med["half_ingest_p99_ms"] <= TARGET_P99_MS),
        ("RSS ≤ 64 MiB (peak, VmHWM)", f"{hwm:.1f} MiB", hwm <= TARGET_RSS_MIB),
    ]

    result = {
        "meta": meta,
        "targets": [{"target": t, "measured": m, "met": ok} for t, m, ok in targets],
        "medians": med,
        "ratios": {"batch_vs_producer_perf": ratio_batch,
                   "batch_vs_producer_perf_value_only": ratio_batch_value,
                   "single_vs_bare": ratio_single},
        "rss_mib": {"VmHWM": hwm, "VmRSS": rss},
        "ingest_metrics": {"produce_metric": produce_metric, "produce_mean_ms": produce_mean,
                           "produce_p50_bucket_ms": produce_p50, "produce_p99_bucket_ms": produce_p99,
                           "events_timed": produce_count},
        "all_responses_accepted": all_accepted,
        "runs_in_medians": [row["run"] for row in valid],
        "runs": per_run,
        "raw_runs": runs,
    }
    with open(json_out, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)
        f.write("\n")

    with open(os.path.join(raw, "commands.sh"), encoding="utf-8") as f:
        commands = f.read()

    m = med
    out = []
    w = out.append
    w("# Ingest API benchmark\n")
    w(f"Generated by `scripts/bench/ingest` on {meta['date']}. Machine-readable: "
      "[`ingest.json`](ingest.json). Raw outputs of this run (oha JSON, ProducerPerformance logs, "
      f"metrics): `{meta['raw']}` (not in git).\n")
    w("## Verdict\n")
    w("| Target | Measured (median of runs) | Verdict |")
    w("|---|---|---|")
    for t, measured, ok in targets:
        w(f"| {t} | {measured} | {verdict(ok)} |")
    w("")
    w(f"Every response was 202 in every measured run: **{'yes' if all_accepted else 'NO — see runs'}** "
      "(requests oha cancelled at its deadline are not counted)."
      + (f" Medians are over runs {', '.join(str(r['run']) for r in valid)}; run(s) "
         f"{', '.join(map(str, excluded))} had failed responses and are excluded."
         if excluded else "") + "\n")
    w("## Setup\n")
    bg = [int(meta.get("background_before", "0") or 0), int(meta.get("background_after", "0") or 0)]
    per_run_bg = [row["background_pct"] for row in per_run if row["background_pct"] is not None]
    quiet = max(bg + per_run_bg) <= 15
    w(f"- Background load (CPU busy with nothing measured: 5 s before and after the runs, 3 s before "
      f"each run): {bg[0]} % and {bg[1]} %; per run "
      f"{', '.join(f'{b} %' for b in per_run_bg) or 'not measured'}; "
      f"load average at the end {meta.get('loadavg', '?')}."
      + ("" if quiet else " **The machine was not idle: other work competed for the CPUs, so "
         "these figures are low and noisy; re-run on a quiet machine.**"))
    w(f"- Machine: {meta['nproc']} CPUs ({meta['cpu']}), {meta['memory']} RAM, {meta['kernel']}. "
      "Load generator, ingest, bare handler, Kafka broker, registry, Redis and PostgreSQL all share "
      "these CPUs, so every figure is a same-machine figure.")
    w(f"- Versions: {meta['rustc']}; oha {meta['oha'].split()[-1]}; {meta['java']}; {meta['kafka']} "
      f"(single KRaft broker, replication factor 1); commit {meta['commit']}; "
      f"{meta.get('ingest_binary', 'target/release/ingest')}.")
    w(f"- Event: `{meta['event_type']}` without `id` (the ingest generates it; no idempotency "
      f"lookups). Encoded record: value **{meta['value_bytes']} bytes** (0x00, schema id, Avro), "
      f"key {meta['key_bytes']} bytes, CloudEvents headers "
      f"{meta.get('header_bytes', '≈ ' + meta['headers_text_bytes'])} bytes (names and values): "
      f"**{record_bytes} bytes** per record as Kafka counts a record's size. Measured by posting "
      "one event and reading its record back with kcat (`%S` value size, `%K` key, `%h` headers).")
    w(f"- Topic: `{meta['topic']}` ({meta['partitions']} partitions like the real topic, RF 1), "
      "created for the run and deleted after; ProducerPerformance writes to its own throwaway topic.")
    w(f"- The ingest under test is a dedicated `target/release/ingest` with scripts/up's environment, "
      f"`CIRC_NAMESPACE={meta['namespace']}`, and **the per-client rate limit raised** "
      f"(`CIRC_INGEST_RATE_PER_SEC` = `CIRC_INGEST_RATE_BURST` = {int(meta['raised_limit']):,}; "
      "the default 2000/s would cap every figure). Everything else is the default configuration; "
      f"its producer: acks=all, idempotence, compression {meta.get('ingest_compression', '?')}, "
      f"linger.ms {meta.get('ingest_linger_ms', '?')}.")
    w(f"- ProducerPerformance: {int(meta['pp_records']):,} records of {record_bytes} bytes (the "
      "ingest's whole record: ProducerPerformance writes no key and no headers, so its value carries "
      f"the same bytes), and for reference of {meta['value_bytes']} bytes (the value alone); "
      "acks=all, enable.idempotence=true, "
      f"compression.type={meta.get('ingest_compression', 'zstd')} (the ingest's), "
      f"linger.ms={meta.get('pp_linger_ms', '5')}, unthrottled.")
    w(f"- oha: {meta['duration']} s per measurement; single-event maximum runs with "
      f"{meta['concurrency']} connections, fixed-rate runs with {meta['rate_concurrency']}, "
      f"batch runs with {meta['batch_concurrency']} connections "
      f"and {meta['batch']} events per request. Fixed-rate runs use `-q RATE --latency-correction` "
      "(latency counted from the scheduled send time: no coordinated omission). "
      f"{meta['runs']} runs; the tables show medians, then each run.\n")

    w("## Throughput (median of runs)\n")
    w("| Measurement | Median | Ratio |")
    w("|---|---:|---|")
    w(f"| Kafka ProducerPerformance, {record_bytes}-byte records/s | {fmt(m['pp_records_per_s'])} | |")
    if m.get("pp_value_records_per_s"):
        w(f"| Kafka ProducerPerformance, {meta['value_bytes']}-byte records/s (value alone) | "
          f"{fmt(m['pp_value_records_per_s'])} | batch ingest {ratio_batch_value:.2f}× |")
    w(f"| Batch ingest ({batch}/request), events/s | {fmt(m['batch_events_per_s'])} "
      f"({fmt(m['batch_requests_per_s'])} requests/s) | **{ratio_batch:.2f}×** ProducerPerformance "
      f"(target ≥ {TARGET_BATCH_VS_PP}) |")
    if m.get("batch_small_events_per_s"):
        w(f"| Batch ingest ({small_batch}/request, {meta['small_batch_concurrency']} connections), "
          f"events/s | {fmt(m['batch_small_events_per_s'])} | "
          f"{m['batch_small_events_per_s'] / m['pp_records_per_s']:.2f}× ProducerPerformance |")
    w(f"| Bare axum POST handler, requests/s | {fmt(m['bare_requests_per_s'])} | |")
    w(f"| Single-event ingest, events/s | {fmt(m['single_events_per_s'])} | **{ratio_single:.2f}×** "
      f"bare handler (target ≥ {TARGET_SINGLE_VS_BARE}) |")
    w("")
    w("Ratios are ratios of the medians; per-run ratios are in the run table.\n")

    w("## Latency at fixed offered rates (median of runs, ms)\n")
    w("| Offered rate | Server | p50 | p90 | p99 | achieved/s |")
    w("|---|---|---:|---:|---:|---:|")
    w(f"| half single-event max ≈ {fmt(m['half_rate'])} req/s | ingest (single event) | "
      f"{fmt(m['half_ingest_p50_ms'], 2)} | {fmt(m['half_ingest_p90_ms'], 2)} | "
      f"**{fmt(m['half_ingest_p99_ms'], 2)}** | {fmt(m['half_ingest_achieved'])} |")
    w(f"| same | bare handler | {fmt(m['half_bare_p50_ms'], 2)} | {fmt(m['half_bare_p90_ms'], 2)} | "
      f"{fmt(m['half_bare_p99_ms'], 2)} | |")
    if m.get("half_pp_p99_ms") is not None:
        w(f"| same | Kafka ProducerPerformance, send → ack (p95 in the p90 column) | "
          f"{fmt(m['half_pp_p50_ms'], 0)} | {fmt(m['half_pp_p95_ms'], 0)} | "
          f"{fmt(m['half_pp_p99_ms'], 0)} | |")
    for rate in extra_rates:
        w(f"| {rate} req/s | ingest (single event) | {fmt(m[f'at{rate}_ingest_p50_ms'], 2)} | "
          f"{fmt(m[f'at{rate}_ingest_p90_ms'], 2)} | {fmt(m[f'at{rate}_ingest_p99_ms'], 2)} | "
          f"{fmt(m[f'at{rate}_ingest_achieved'])} |")
        w(f"| {rate} req/s | bare handler | {fmt(m[f'at{rate}_bare_p50_ms'], 2)} | "
          f"{fmt(m[f'at{rate}_bare_p90_ms'], 2)} | {fmt(m[f'at{rate}_bare_p99_ms'], 2)} | |")
    w(f"| half batch max ≈ {fmt(m['batch_half_rate'])} req/s × {batch} events | ingest (batch) | "
      f"{fmt(m['batch_half_p50_ms'], 2)} | {fmt(m['batch_half_p90_ms'], 2)} | "
      f"{fmt(m['batch_half_p99_ms'], 2)} | |")
    w("")
    w(f"At maximum throughput (unthrottled, for reference): single-event p99 "
      f"{fmt(m['single_p99_ms'], 2)} ms, batch p99 {fmt(m['batch_p99_ms'], 2)} ms, "
      f"ProducerPerformance p99 {fmt(m['pp_p99_ms'], 2)} ms.\n")

    w("## Where the CPU goes (median of runs, cores of the machine's "
      f"{meta['nproc']})\n")
    w("Measured from /proc/<pid>/stat and /proc/stat around each measurement. \"Other\" is the rest "
      "of the busy time: the load generator (oha or the ProducerPerformance JVM), the kernel's "
      "loopback networking, the registry, Redis.\n")
    w("| Measurement | ingest | bare-http | Kafka broker | other | machine busy |")
    w("|---|---:|---:|---:|---:|---:|")
    cpus = int(meta["nproc"])
    kinds = [("ProducerPerformance", lambda r: r["producer_perf"]),
             ("Batch ingest, max", lambda r: r["batch_max"]),
             ("Single-event ingest, max", lambda r: r["single_max"]),
             ("bare-http, max", lambda r: r["bare_max"]),
             ("Single-event ingest at half max", lambda r: r["fixed"][str(r["half_rate"])]["ingest"]),
             ("Batch ingest at half max", lambda r: r["batch_at_half"])]
    cpu_table = {}
    for label, pick in kinds:
        splits = [pick(r).get("cpu") for r in runs if r["run"] in result["runs_in_medians"]]
        splits = [c for c in splits if c]
        if not splits:
            continue
        row = {k: median([c[k] for c in splits]) for k in splits[0]}
        row["other_cores"] = max(0.0, row["machine_busy_pct"] / 100 * cpus - row["ingest_cores"]
                                 - row["bare_cores"] - row["kafka_cores"])
        cpu_table[label] = row
        w(f"| {label} | {row['ingest_cores']:.2f} | {row['bare_cores']:.2f} | "
          f"{row['kafka_cores']:.2f} | {row['other_cores']:.2f} | {row['machine_busy_pct']:.0f} % |")
    w("")
    if "Single-event ingest, max" in cpu_table and "bare-http, max" in cpu_table:
        si, bh = cpu_table["Single-event ingest, max"], cpu_table["bare-http, max"]
        if si["ingest_cores"] and bh["bare_cores"]:
            per_ingest = si["ingest_cores"] / m["single_events_per_s"] * 1e6
            per_bare = bh["bare_cores"] / m["bare_requests_per_s"] * 1e6
            w(f"CPU per request: ingest ≈ {per_ingest:.0f} µs (plus ≈ "
              f"{si['kafka_cores'] / m['single_events_per_s'] * 1e6:.0f} µs in the broker), bare "
              f"handler ≈ {per_bare:.1f} µs.")
    if "Batch ingest, max" in cpu_table and "ProducerPerformance" in cpu_table:
        bi = cpu_table["Batch ingest, max"]
        if bi["ingest_cores"]:
            w(f"Batch ingest: ≈ {bi['ingest_cores'] / m['batch_events_per_s'] * 1e6:.1f} µs of ingest "
              "CPU per event.")
    w("")
    result["cpu_split"] = cpu_table
    with open(json_out, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)
        f.write("\n")

    w("## Memory and the ingest's own metrics\n")
    w(f"- Ingest RSS after all runs: VmHWM (peak) **{hwm:.1f} MiB**, VmRSS (current) {rss:.1f} MiB "
      f"(target ≤ {TARGET_RSS_MIB:.0f} MiB).")
    if produce_metric:
        w(f"- `{produce_metric}` over {produce_count:,} events of the whole run (warm-up included): "
          f"mean {fmt(produce_mean, 2)} ms, p50 in the bucket ≤ {fmt(produce_p50, 1)} ms, p99 in the "
          f"bucket ≤ {fmt(produce_p99, 1)} ms (time from handing the record to librdkafka to the "
          "broker's acknowledgement).")
    w("")

    w("## Each run\n")
    head = ["run", "PP rec/s", "batch ev/s", "batch/PP", "single ev/s", "bare req/s", "single/bare",
            "half rate", "p50", "p90", "p99 @half", "bare p99 @half", "all 202", "background"]
    w("| " + " | ".join(head) + " |")
    w("|" + "---:|" * len(head))
    for row in per_run:
        w("| " + " | ".join([
            str(row["run"]), fmt(row["pp_records_per_s"]), fmt(row["batch_events_per_s"]),
            f"{row['batch_vs_pp']:.2f}", fmt(row["single_events_per_s"]),
            fmt(row["bare_requests_per_s"]), f"{row['single_vs_bare']:.2f}", fmt(row["half_rate"]),
            fmt(row["half_ingest_p50_ms"], 2), fmt(row["half_ingest_p90_ms"], 2),
            fmt(row["half_ingest_p99_ms"], 2), fmt(row["half_bare_p99_ms"], 2),
            "yes" if row["all_accepted"] else "NO",
            "–" if row["background_pct"] is None else f"{row['background_pct']} %",
        ]) + " |")
    w("")
    for row, r in zip(per_run, runs):
        bad = [(k, v) for k, v in [("batch", r["batch_max"]), ("single", r["single_max"]),
                                   ("bare", r["bare_max"]), ("batch@half", r["batch_at_half"])]
               + [(f"{side}@{rate}", v) for rate, f in r["fixed"].items() for side, v in f.items()]
               if not v["all_accepted"]]
        for name, v in bad:
            w(f"- run {row['run']} {name}: statuses {v['statuses']}, errors {v['errors']}")
    w("")

    w("## Commands\n")
    w("Exactly as run, from the repository root (the token is `$TOKEN`; request bodies are in the "
      "raw directory, generated by `scripts/bench/report.py bodies`). To reproduce everything: "
      "`scripts/up`, then `scripts/bench/ingest`.\n")
    w("```sh")
    w(commands.rstrip("\n"))
    w("```")
    with open(md_out, "w", encoding="utf-8") as f:
        f.write("\n".join(out) + "\n")


if __name__ == "__main__":
    dispatch(sys.argv, {"bodies": (cmd_bodies, 5), "oha": (cmd_oha, 1), "pp": (cmd_pp, 1),
                        "render": (cmd_render, 3)}, __doc__)
