#!/usr/bin/env python3
"""Renders a run of scripts/bench/consumer/run (standard library only).

  report.py RAW_DIR MD_OUT JSON_OUT

Reads the raw outputs (consumer-bench JSON, ConsumerPerformance and EndToEndLatency text), takes
medians over the runs, checks the targets and writes results.md and results.json.
"""

import glob
import json
import os
import re
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from reporting import read_meta  # noqa: E402  (scripts/bench/reporting.py)

# The targets of the benchmark; do not tune them to the results.
TARGET_THROUGHPUT_RATIO = 0.7  # ConsumerGroup records/s ≥ 0.7 × ConsumerPerformance
TARGET_P99_FACTOR = 2.0  # p99 send → handler ≤ 2 × EndToEndLatency p99


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(value, digits=0):
    if value is None:
        return "–"
    if digits:
        return f"{value:,.{digits}f}"
    return f"{value:,.0f}"


def verdict(ok):
    if ok is None:
        return "**not measured**"
    return "**met**" if ok else "**not met**"


def load_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read().strip()
        return json.loads(text) if text else None
    except (OSError, ValueError):
        return None



def consumer_perf(path):
    """The summary line of ConsumerPerformance, by its header's column names."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = [line.strip() for line in f]
    except OSError:
        return None
    for i, line in enumerate(lines):
        if line.startswith("start.time") and i + 1 < len(lines):
            names = [n.strip() for n in line.split(",")]
            values = [v.strip() for v in lines[i + 1].split(",")]
            if len(values) != len(names):
                return None
            row = dict(zip(names, values))
            return {
                "records": int(float(row["data.consumed.in.nMsg"])),
                "records_per_s": float(row["nMsg.sec"]),
                "fetch_records_per_s": float(row["fetch.nMsg.sec"]),
                "rebalance_ms": float(row["rebalance.time.ms"]),
                "fetch_ms": float(row["fetch.time.ms"]),
                "mb_per_s": float(row["MB.sec"]),
                "raw": os.path.basename(path),
            }
    return None


def end_to_end(path):
    """EndToEndLatency's average (µs precision) and its percentiles (whole ms, truncated)."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError:
        return None
    avg = re.search(r"Avg latency: ([0-9.]+) ms", text)
    pct = re.search(r"Percentiles: 50th = (\d+), 99th = (\d+), 99.9th = (\d+)", text)
    if not avg or not pct:
        return None
    return {
        "avg_ms": float(avg.group(1)),
        "p50_ms": int(pct.group(1)),
        "p99_ms": int(pct.group(2)),
        "p99_9_ms": int(pct.group(3)),
        "raw": os.path.basename(path),
    }


def latency_runs(raw, pattern):
    """The latency results of every run file (one consumer-bench invocation per run), each
    result numbered with its file's run."""
    results = []
    for n, path in run_files(raw, pattern).items():
        for result in (load_json(path) or {}).get("results") or []:
            results.append(dict(result, run=n))
    return {"results": results}


def p99_of(latency, run, rate):
    """One run's 202 → handler p99 at one rate, or None."""
    row = next((r for r in latency.get("results", [])
                if r.get("run") == run and r.get("rate") == rate), None)
    return row["ms"]["202_to_handler"]["p99"] if row else None


def run_files(raw, pattern):
    """{run number: path} for files like name-r<n>.ext."""
    out = {}
    for path in glob.glob(os.path.join(raw, pattern)):
        m = re.search(r"-r(\d+)\.[a-z]+$", path)
        if m:
            out[int(m.group(1))] = path
    return dict(sorted(out.items()))


def main(raw, md_out, json_out):
    meta = read_meta(raw)
    runs = int(meta["runs"])
    produce = load_json(os.path.join(raw, "produce.json")) or {}
    setup = load_json(os.path.join(raw, "setup.json")) or {}
    group_conf = setup.get("groups", {}).get(meta["group"], {})
    with open(os.path.join(raw, "load.txt"), encoding="utf-8") as f:
        load_lines = [line.rstrip("\n") for line in f if line.strip()]

    # ---- throughput ----
    cp = {n: consumer_perf(p) for n, p in run_files(raw, "consumer-perf-r*.txt").items()}
    alo = {n: load_json(p) for n, p in run_files(raw, "group-alo-r*.json").items()}
    txn = {n: load_json(p) for n, p in run_files(raw, "group-txn-r*.json").items()}
    throughput_runs = []
    for n in range(1, runs + 1):
        c, a, t = cp.get(n), alo.get(n), txn.get(n)
        throughput_runs.append({
            "run": n,
            "consumer_perf": c,
            "group_at_least_once": a,
            "group_transactional": t,
            "ratio_at_least_once": (a["records_per_s"] / c["records_per_s"]) if a and c else None,
            "ratio_transactional": (t["records_per_s"] / c["records_per_s"]) if t and c else None,
        })

    def med(source, key):
        return median([(r or {}).get(key) for r in source.values()])

    tp = {
        "consumer_perf_records_per_s": med(cp, "records_per_s"),
        "consumer_perf_fetch_records_per_s": med(cp, "fetch_records_per_s"),
        "consumer_perf_rebalance_ms": med(cp, "rebalance_ms"),
        "alo_records_per_s": med(alo, "records_per_s"),
        "alo_records_per_s_after_first": med(alo, "records_per_s_after_first"),
        "alo_first_handled_s": med(alo, "first_handled_s"),
        "alo_cpu_seconds": med(alo, "cpu_seconds"),
        "alo_seconds": med(alo, "seconds"),
        "txn_records_per_s": med(txn, "records_per_s"),
        "txn_records_per_s_after_first": med(txn, "records_per_s_after_first"),
        "txn_first_handled_s": med(txn, "first_handled_s"),
        "txn_cpu_seconds": med(txn, "cpu_seconds"),
        "txn_seconds": med(txn, "seconds"),
        "txn_stop_seconds": med(txn, "stop_seconds"),
        "alo_stop_seconds": med(alo, "stop_seconds"),
    }

    def ratio(a, b):
        return a / b if a is not None and b else None

    tp["ratio_at_least_once"] = ratio(tp["alo_records_per_s"], tp["consumer_perf_records_per_s"])
    tp["ratio_transactional"] = ratio(tp["txn_records_per_s"], tp["consumer_perf_records_per_s"])
    tp["ratio_at_least_once_steady"] = ratio(tp["alo_records_per_s_after_first"],
                                             tp["consumer_perf_fetch_records_per_s"])
    tp["ratio_transactional_steady"] = ratio(tp["txn_records_per_s_after_first"],
                                             tp["consumer_perf_fetch_records_per_s"])

    # ---- latency ----
    latency = latency_runs(raw, "latency-r*.json")
    e2e = {n: end_to_end(p) for n, p in run_files(raw, "e2e-r*.txt").items()}
    e2e_med = {k: median([(r or {}).get(k) for r in e2e.values()])
               for k in ("avg_ms", "p50_ms", "p99_ms", "p99_9_ms")}
    rates = [int(r) for r in meta["rates"].split()]
    by_rate = {}
    for rate in rates:
        rows = [r for r in latency.get("results", []) if r.get("rate") == rate]
        entry = {"runs": len(rows)}
        for metric in ("send_to_202", "202_to_handler", "send_to_handler", "scheduled_to_handler"):
            for p in ("p50", "p90", "p99", "max"):
                entry[f"{metric}_{p}_ms"] = median([r["ms"][metric][p] for r in rows])
        entry["achieved_rate"] = median([r["achieved_rate"] for r in rows])
        entry["sent"] = sum(r["sent"] for r in rows)
        entry["not_202"] = sum(v for r in rows for k, v in r["statuses"].items() if k != "202")
        entry["missing"] = sum(r["missing"] for r in rows)
        entry["skipped_overload"] = sum(r["skipped_overload"] for r in rows)
        by_rate[rate] = entry

    # ---- baseline: another commit's consumer-bench, alternating with this one ----
    baseline = None
    if meta.get("baseline"):
        base_alo = {n: load_json(p) for n, p in run_files(raw, "group-base-alo-r*.json").items()}
        base_latency = latency_runs(raw, "latency-base-r*.json")
        base_by_rate = {}
        for rate in rates:
            rows = [r for r in base_latency.get("results", []) if r.get("rate") == rate]
            base_by_rate[rate] = {
                f"{metric}_{p}_ms": median([r["ms"][metric][p] for r in rows])
                for metric in ("send_to_handler", "202_to_handler")
                for p in ("p50", "p99")
            }
        baseline = {
            "commit": meta["baseline"],
            "alo_records_per_s": med(base_alo, "records_per_s"),
            "alo_cpu_seconds": med(base_alo, "cpu_seconds"),
            "runs": {n: (r or {}).get("records_per_s") for n, r in base_alo.items()},
            "by_rate_medians": base_by_rate,
        }
        baseline["ratio_at_least_once"] = ratio(tp["alo_records_per_s"], baseline["alo_records_per_s"])

    # ---- retry ----
    retry = {}
    for pair in meta["retry"].split():
        group = pair.split(":")[0]
        rows = {n: load_json(p) for n, p in run_files(raw, f"retry-{group}-r*.json").items()}
        rows = {n: r for n, r in rows.items() if r}
        if not rows:
            retry[group] = {"runs": 0}
            continue
        values = list(rows.values())
        retry[group] = {
            "runs": len(values),
            "event_type": values[0]["event_type"],
            "delay_ms": values[0]["delay_ms"],
            "published": sum(r["published"] for r in values),
            "second_attempts": sum(r["second_attempts"] for r in values),
            "missing": sum(r["missing"] for r in values),
            "early": sum(r["early"] for r in values),
            "lateness_min_ms": min(r["lateness_ms"]["min"] for r in values
                                   if r["lateness_ms"]["min"] is not None),
            "lateness_p50_ms": median([r["lateness_ms"]["p50"] for r in values]),
            "lateness_p90_ms": median([r["lateness_ms"]["p90"] for r in values]),
            "lateness_p99_ms": median([r["lateness_ms"]["p99"] for r in values]),
            "lateness_max_ms": max(r["lateness_ms"]["max"] for r in values
                                   if r["lateness_ms"]["max"] is not None),
            "per_run": {n: r["lateness_ms"] for n, r in rows.items()},
        }

    # ---- targets ----
    targets = []
    r = tp["ratio_at_least_once"]
    targets.append(("ConsumerGroup (at-least-once, no-op handler) ≥ 0.7 × ConsumerPerformance records/s",
                    f"{r:.2f}×" if r is not None else "–",
                    None if r is None else r >= TARGET_THROUGHPUT_RATIO))
    if meta.get("transactional") == "1":
        r = tp["ratio_transactional"]
        targets.append(("ConsumerGroup (transactional) ≥ 0.7 × ConsumerPerformance records/s",
                        f"{r:.2f}×" if r is not None else "–",
                        None if r is None else r >= TARGET_THROUGHPUT_RATIO))
    e2e_p99 = e2e_med["p99_ms"]
    for rate in rates:
        # The whole path, then the part after the acknowledgement alone (202 to handler's end).
        for metric, label in (("send_to_handler", "send → handler"),
                              ("202_to_handler", "HTTP 202 → handler")):
            p99 = by_rate[rate][f"{metric}_p99_ms"]
            ok = (None if p99 is None or e2e_p99 is None
                  else p99 <= TARGET_P99_FACTOR * max(e2e_p99, 1))
            targets.append((f"p99 {label} at {rate}/s ≤ 2 × EndToEndLatency p99 "
                            f"({fmt(e2e_p99)} ms)", f"{fmt(p99, 1)} ms", ok))
    for group, g in retry.items():
        if g.get("runs"):
            targets.append((f"{group}: no second attempt before its {g['delay_ms'] / 1000:g} s delay",
                            f"{g['early']} early of {g['second_attempts']}", g["early"] == 0))

    result = {
        "meta": meta,
        "load": load_lines,
        "targets": [{"target": t, "measured": m, "met": ok} for t, m, ok in targets],
        "throughput": {"medians": tp, "runs": throughput_runs, "produce": produce,
                       "group": group_conf},
        "latency": {"by_rate_medians": by_rate, "end_to_end_latency_medians": e2e_med,
                    "end_to_end_latency_runs": e2e, "raw": latency},
        "retry": retry,
        "baseline": baseline,
    }
    with open(json_out, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)
        f.write("\n")

    with open(os.path.join(raw, "commands.sh"), encoding="utf-8") as f:
        commands = f.read()

    out = []
    w = out.append
    w("# Consumer runtime benchmark\n")
    w(f"Generated by `scripts/bench/consumer/run` on {meta['date']}. Machine-readable, with every "
      "run's raw figures: [`results.json`](results.json). Raw outputs (consumer-bench JSON, Kafka tool "
      f"logs): `{meta['raw']}` (not in git).\n")
    w("To reproduce: `scripts/stack up`, then `scripts/bench/consumer/run` (defaults below; "
      "`BENCH_RUNS`, `BENCH_RECORDS`, `BENCH_RATES`, ... override them). Every command it ran is "
      "listed at the end.\n")
    w("## Verdict\n")
    w("| Target | Measured (median of runs) | Verdict |")
    w("|---|---|---|")
    for t, m, ok in targets:
        w(f"| {t} | {m} | {verdict(ok)} |")
    w("")
    w("Two latency figures per rate: `HTTP 202 → handler` runs from the client reading the 202 "
      "(the event is in Kafka) to the handler's end; `send → handler` also counts the HTTP request "
      "and the broker's acknowledgement before the 202, so it is the stricter of the two. "
      "EndToEndLatency's percentiles are whole milliseconds, truncated: its p99 of N ms is between "
      "N and N + 1, and the bound above uses N.\n")
    w("## Machine load during the run\n")
    w("The machine is shared: these are the load averages and the CPUs' busy share (over one "
      "second, with nothing of the benchmark running) at the start of each phase. Figures taken "
      "under load are low and noisy; compare runs on a quiet machine.\n")
    w("```")
    for line in load_lines:
        w(line)
    w("```\n")
    w("## Setup\n")
    w(f"- Machine: {meta['nproc']} CPUs ({meta['cpu']}), {meta['memory']} RAM, {meta['kernel']}. "
      "Kafka (one KRaft broker), the registry, Redis, PostgreSQL, the ingest, the Kafka tools and "
      "consumer-bench all share these CPUs.")
    w(f"- Versions: {meta['rustc']}; {meta['java']}; {meta['kafka']}; commit {meta['commit']}. "
      "Release builds (`cargo build --release`).")
    w(f"- Records: {fmt(int(meta['records']))} `{meta['event_type']}` events published with the "
      f"runtime's `EventPublisher` (Confluent wire format, CloudEvents headers, fresh uuids, so keys "
      f"spread over partitions) into `{meta['topic']}` "
      f"({produce.get('partitions_written', '–')} partitions written), value "
      f"{meta['value_bytes']} bytes. Published at {fmt(produce.get('events_per_s'))} events/s.")
    w(f"- Group: `{meta['group']}` (subscribes {len(group_conf.get('subscribe', []))} types on "
      f"{len(group_conf.get('main_topics', []))} topics; max_in_flight "
      f"{group_conf.get('max_in_flight', '–')}), default `GroupSettings`, no Redis (no stats flush), "
      "a fresh consumer group id per run (`<namespace>.<group>.<run>`) reading from the earliest "
      "offset. The handler of every subscribed type only counts (an `AtomicU64`).")
    w("- ConsumerPerformance: default consumer settings, its own fresh group per run, "
      "`--messages` = the record count. Its `nMsg.sec` includes the group join, like the "
      "ConsumerGroup figure (clock from `run()` to the last handler call); `fetch.nMsg.sec` "
      "excludes the join, like ConsumerGroup's rate after the first handled event.")
    w(f"- Latency: a dedicated `target/release/ingest` (scripts/up's environment, namespace of the "
      f"run, default settings: linger 0 ms, zstd, rate limit 2000/s per client), single events "
      f"POSTed at {', '.join(meta['rates'].split())} events/s for {meta['duration']} s each "
      "(open loop: each request at its scheduled time, on its own task; up to 1024 outstanding). "
      "Each event carries its own CloudEvents `subject`; the group runs in the same process (on "
      "a tokio runtime of its own, as in a group binary, so the load generator never waits "
      "behind it) and records when its handler ran for each subject, so send, 202 and handler times share one "
      "monotonic clock. `202 → handler` is negative when the handler ran before the client read "
      "the 202.")
    w(f"- EndToEndLatency: {fmt(int(meta['e2e_messages']))} records of {meta['value_bytes']} bytes, "
      "acks=all, on a 1-partition topic: it sends one record, waits for the ack, polls until it "
      "arrives, then sends the next (a sequential round trip, not a fixed rate). Its percentiles are "
      "whole milliseconds, truncated (`0` means under 1 ms); its average is exact.")
    w(f"- Retry: per group and run, a fresh namespace; {meta['retry_count']} events published at "
      f"{meta['retry_rate']}/s; the handler fails attempt 1 (retryable) and records the wall-clock "
      "ms, then records attempt 2. Lateness = attempt 2 − failure − the ladder's first delay.")
    w(f"- {runs} runs of everything; the tables show medians (retry: totals, min and max over the "
      "runs), then each run.\n")

    w("## 1. Throughput, no-op handler (median of runs)\n")
    w("| Consumer | records/s (start → last) | ratio | records/s after the first | ratio | "
      "first record after | CPU of the process |")
    w("|---|---:|---:|---:|---:|---:|---:|")
    w(f"| Kafka ConsumerPerformance | {fmt(tp['consumer_perf_records_per_s'])} | | "
      f"{fmt(tp['consumer_perf_fetch_records_per_s'])} (fetch.nMsg.sec) | | "
      f"{fmt(tp['consumer_perf_rebalance_ms'])} ms (rebalance) | |")

    def ratio_text(v):
        return f"**{v:.2f}×**" if v is not None else "–"

    w(f"| ConsumerGroup, at-least-once | {fmt(tp['alo_records_per_s'])} | "
      f"{ratio_text(tp['ratio_at_least_once'])} | {fmt(tp['alo_records_per_s_after_first'])} | "
      f"{ratio_text(tp['ratio_at_least_once_steady'])} | "
      f"{fmt(tp['alo_first_handled_s'] and tp['alo_first_handled_s'] * 1000)} ms | "
      f"{fmt(tp['alo_cpu_seconds'], 2)} s in {fmt(tp['alo_seconds'], 2)} s |")
    if meta.get("transactional") == "1":
        w(f"| ConsumerGroup, transactional | {fmt(tp['txn_records_per_s'])} | "
          f"{ratio_text(tp['ratio_transactional'])} | {fmt(tp['txn_records_per_s_after_first'])} | "
          f"{ratio_text(tp['ratio_transactional_steady'])} | "
          f"{fmt(tp['txn_first_handled_s'] and tp['txn_first_handled_s'] * 1000)} ms | "
          f"{fmt(tp['txn_cpu_seconds'], 2)} s in {fmt(tp['txn_seconds'], 2)} s |")
    w("")
    w("Ratios are ratios of the medians. Stopping the group after the last event (not in the "
      f"figures): at-least-once {fmt(tp['alo_stop_seconds'], 1)} s, transactional "
      f"{fmt(tp['txn_stop_seconds'], 1)} s.\n")
    w("| run | ConsumerPerformance rec/s | at-least-once rec/s | ratio | transactional rec/s | ratio |")
    w("|---:|---:|---:|---:|---:|---:|")
    for row in throughput_runs:
        c = row["consumer_perf"] or {}
        a = row["group_at_least_once"] or {}
        t = row["group_transactional"] or {}
        w(f"| {row['run']} | {fmt(c.get('records_per_s'))} | {fmt(a.get('records_per_s'))} | "
          f"{fmt(row['ratio_at_least_once'], 2)} | {fmt(t.get('records_per_s'))} | "
          f"{fmt(row['ratio_transactional'], 2)} |")
    w("")

    w("## 2. End-to-end latency: HTTP 202 → handler (median of runs, ms)\n")
    w("| Offered rate | achieved/s | send → 202 p50 / p99 | 202 → handler p50 / p90 / p99 | "
      "send → handler p50 / p90 / p99 / max | sent | not 202 | never handled |")
    w("|---|---:|---:|---:|---:|---:|---:|---:|")
    for rate in rates:
        e = by_rate[rate]
        w(f"| {rate}/s | {fmt(e['achieved_rate'])} | {fmt(e['send_to_202_p50_ms'], 2)} / "
          f"{fmt(e['send_to_202_p99_ms'], 2)} | {fmt(e['202_to_handler_p50_ms'], 2)} / "
          f"{fmt(e['202_to_handler_p90_ms'], 2)} / {fmt(e['202_to_handler_p99_ms'], 2)} | "
          f"{fmt(e['send_to_handler_p50_ms'], 2)} / {fmt(e['send_to_handler_p90_ms'], 2)} / "
          f"**{fmt(e['send_to_handler_p99_ms'], 2)}** / {fmt(e['send_to_handler_max_ms'], 1)} | "
          f"{fmt(e['sent'])} | {fmt(e['not_202'])} | {fmt(e['missing'])} |")
    w("")
    w(f"Kafka EndToEndLatency (median of runs): average **{fmt(e2e_med['avg_ms'], 3)} ms**, p50 "
      f"{fmt(e2e_med['p50_ms'])} ms, p99 **{fmt(e2e_med['p99_ms'])} ms**, p99.9 "
      f"{fmt(e2e_med['p99_9_ms'])} ms (whole ms, truncated). Per run: "
      + "; ".join(f"run {n}: avg {r['avg_ms']:.3f}, p50 {r['p50_ms']}, p99 {r['p99_ms']}, "
                  f"p99.9 {r['p99_9_ms']}" for n, r in e2e.items() if r) + ".\n")
    w("Each run and rate (send → handler p50 / p99 ms):\n")
    w("| run | " + " | ".join(f"{rate}/s" for rate in rates) + " |")
    w("|---:|" + "---:|" * len(rates))
    for n in range(1, runs + 1):
        cells = []
        for rate in rates:
            row = next((r for r in latency.get("results", [])
                        if r.get("run") == n and r.get("rate") == rate), None)
            cells.append(f"{fmt(row['ms']['send_to_handler']['p50'], 2)} / "
                         f"{fmt(row['ms']['send_to_handler']['p99'], 2)}" if row else "–")
        w(f"| {n} | " + " | ".join(cells) + " |")
    w("")

    if baseline:
        b = baseline
        w(f"## Beside commit {b['commit']}\n")
        w(f"The consumer-bench of commit {b['commit']} ran in the same invocation, on the same "
          "broker and records: each throughput run and each latency run (all rates, a namespace "
          "and an ingest of its own) of this commit is followed (odd runs) or preceded (even "
          "runs) by one of the baseline.\n")
        w(f"| | this commit ({meta['commit']}) | {b['commit']} | ratio |")
        w("|---|---:|---:|---:|")
        w(f"| at-least-once records/s (median) | {fmt(tp['alo_records_per_s'])} | "
          f"{fmt(b['alo_records_per_s'])} | **{fmt(b['ratio_at_least_once'], 2)}×** |")
        w(f"| CPU of the process (median) | {fmt(tp['alo_cpu_seconds'], 2)} s | "
          f"{fmt(b['alo_cpu_seconds'], 2)} s | |")
        for metric, name in (("send_to_handler", "send → handler"),
                             ("202_to_handler", "202 → handler")):
            for rate in rates:
                mine, theirs = by_rate[rate], b["by_rate_medians"][rate]
                w(f"| {name} p50 / p99 at {rate}/s (ms) | "
                  f"{fmt(mine[f'{metric}_p50_ms'], 2)} / {fmt(mine[f'{metric}_p99_ms'], 2)} | "
                  f"{fmt(theirs[f'{metric}_p50_ms'], 2)} / {fmt(theirs[f'{metric}_p99_ms'], 2)} | "
                  f"{fmt(ratio(mine[f'{metric}_p99_ms'], theirs[f'{metric}_p99_ms']), 2)}× (p99) |")
        w("")
        w("Per run, 202 → handler p99 (ms), this commit against the baseline: " + "; ".join(
            f"{rate}/s: " + ", ".join(
                f"{fmt(p99_of(latency, n, rate), 2)}/{fmt(p99_of(base_latency, n, rate), 2)}"
                for n in range(1, runs + 1))
            for rate in rates) + ".\n")
        w("Per run, at-least-once records/s: " + "; ".join(
            f"run {row['run']}: {fmt((row['group_at_least_once'] or {}).get('records_per_s'))} "
            f"against {fmt(b['runs'].get(row['run']))}" for row in throughput_runs) + ".\n")

    w("## 3. Retry delay accuracy\n")
    w("| Group | type | first delay | events | second attempts | early | lateness min | p50 | p90 | "
      "p99 | max |")
    w("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for group, g in retry.items():
        if not g.get("runs"):
            w(f"| {group} | – | – | – | – | – | – | – | – | – | – |")
            continue
        w(f"| {group} | `{g['event_type']}` | {g['delay_ms'] / 1000:g} s | {g['published']} | "
          f"{g['second_attempts']} | **{g['early']}** | {fmt(g['lateness_min_ms'])} ms | "
          f"{fmt(g['lateness_p50_ms'])} ms | {fmt(g['lateness_p90_ms'])} ms | "
          f"**{fmt(g['lateness_p99_ms'])} ms** | {fmt(g['lateness_max_ms'])} ms |")
    w("")
    w("p50/p90/p99 are medians over the runs; min and max over all events; events and attempts "
      "are totals. Per run (p50 / p99 / max ms): "
      + "; ".join(f"{group} " + ", ".join(f"run {n}: {s['p50']:g} / {s['p99']:g} / {s['max']:g}"
                                            for n, s in g.get("per_run", {}).items()
                                            if s.get("p50") is not None)
                  for group, g in retry.items() if g.get("runs")) + ".\n")

    notes_path = os.path.join(os.path.dirname(md_out), "notes.md")
    if os.path.exists(notes_path):
        with open(notes_path, encoding="utf-8") as f:
            w(f.read().rstrip() + "\n")

    w("## Commands\n")
    w("Exactly as run, from the repository root.\n")
    w("```sh")
    w(commands.rstrip())
    w("```")
    with open(md_out, "w", encoding="utf-8") as f:
        f.write("\n".join(out) + "\n")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(*sys.argv[1:])
