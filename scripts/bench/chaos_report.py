#!/usr/bin/env python3
"""Helpers of scripts/chaos (standard library only).

  chaos_report.py row RUN_DIR               one fault run (verify.json, load.json, cpu-*) -> a JSON line
  chaos_report.py line RUN_DIR              the same as one human line (progress on stderr)
  chaos_report.py render RAW_DIR MD JSON    rows.jsonl + meta.env -> the results files
"""

import collections
import json
import os
import re
import sys

# The targets the suite judges against; fixed, never tuned to the results.
TARGET_RESUME_S = 5.0

BROKER_FAULTS = ("leader-kill", "controller-kill", "broker-restart-election")

COLUMNS = ("Fault", "Acknowledged", "Lost", "Duplicated", "Refused", "Refused but written",
           "503 window (s)", "Time to recover (s)", "Impaired until (s)", "Effects applied once")


# ---- one run --------------------------------------------------------------------------------------------
def read_ticks(path):
    out = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            name, _, value = line.strip().partition(" ")
            if name:
                out[name] = float(value or 0)
    return out


def cpu_split(run):
    """Cores used per process of the chaos stack over the load, and the machine's busy share."""
    try:
        before = read_ticks(os.path.join(run, "cpu-begin"))
        after = read_ticks(os.path.join(run, "cpu-end"))
    except OSError:
        return None
    total = (after["machine_busy"] - before["machine_busy"]) + (after["machine_idle"] - before["machine_idle"])
    if total <= 0:
        return None
    cpus = os.cpu_count() or 1
    cores = {}
    for name, value in after.items():
        if name.startswith("machine_"):
            continue
        # a process restarted during the run starts from 0: count what the new one used
        delta = value - before.get(name, 0) if value >= before.get(name, 0) else value
        cores[name] = round(delta / total * cpus, 2)
    busy = (after["machine_busy"] - before["machine_busy"]) / total
    ours = sum(cores.values())
    return {
        "cores": cores,
        "machine_busy_pct": round(busy * 100, 1),
        "other_cores": round(max(0.0, busy * cpus - ours), 2),
    }


def leaders(path):
    """topic/partition -> leader node, from a `kcat -L` listing."""
    out, topic = {}, None
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                m = re.match(r'\s*topic "([^"]+)"', line)
                if m:
                    topic = m.group(1)
                    continue
                m = re.match(r"\s*partition (\d+), leader (-?\d+),", line)
                if m and topic:
                    out[f"{topic}/{m.group(1)}"] = int(m.group(2))
    except OSError:
        pass
    return out


def victim_leadership(run, row):
    """For a broker fault: the refused-but-written events on partitions the victim led before the
    fault, and on partitions other brokers led (whose writes had a live leader throughout)."""
    fault = next((m for m in row["timeline"] if m["mark"] == "fault"), None)
    m = re.search(r"broker (\d+)", fault["note"]) if fault else None
    if not m:
        return None
    victim, before = int(m.group(1)), leaders(os.path.join(run, "metadata-before.txt"))
    split = {"victim_led": 0, "other_led": 0, "unknown": 0}
    for at, n in row.get("refused_written_by_partition", {}).items():
        leader = before.get(at)
        split["unknown" if leader is None else "victim_led" if leader == victim else "other_led"] += n
    return {"victim": victim, "refused_written": split}


def per_second(run, path):
    """Answers per second from the first request, by status/error code (a TSV for the raw folder)."""
    with open(os.path.join(run, "outcomes.jsonl"), encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    if not rows:
        return
    t0 = rows[0]["sent_ms"]
    buckets = collections.defaultdict(collections.Counter)
    for r in rows:
        key = str(r["status"]) + (f"/{r['error_code']}" if r.get("error_code") else "")
        if r["status"] == 202 and r["done_ms"] - r["sent_ms"] > 1000:
            key = "202 over 1 s"
        buckets[int((r["done_ms"] - t0) / 1000)][key] += 1
    keys = sorted({k for b in buckets.values() for k in b})
    with open(path, "w", encoding="utf-8") as f:
        f.write("second\t" + "\t".join(keys) + "\n")
        for sec in sorted(buckets):
            f.write(f"{sec}\t" + "\t".join(str(buckets[sec][k]) for k in keys) + "\n")


def cmd_row(run):
    with open(os.path.join(run, "verify.json"), encoding="utf-8") as f:
        row = json.load(f)
    try:
        with open(os.path.join(run, "load.json"), encoding="utf-8") as f:
            row["load"] = json.load(f)
    except (OSError, ValueError):
        row["load"] = None
    row["run"] = os.path.basename(run.rstrip("/"))
    row["cpu"] = cpu_split(run)
    row["victim_leadership"] = victim_leadership(run, row)
    per_second(run, os.path.join(run, "answers-per-second.tsv"))
    print(json.dumps(row, separators=(",", ":")))


def cmd_line(run):
    with open(os.path.join(run, "verify.json"), encoding="utf-8") as f:
        row = json.load(f)
    cells = table_cells(row)
    print("  " + "; ".join(f"{k.lower()} {v}" for k, v in zip(COLUMNS[1:], cells[1:])))


# ---- cells ----------------------------------------------------------------------------------------------
def num(x):
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:,.2f}"
    return f"{x:,}"


def effects_cell(row):
    parts = []
    for name, g in sorted(row.get("groups", {}).items()):
        text = f"{name} {g['processed_once']:,}/{g['events']:,}"
        if "ledger_balanced" in g:
            text += ", ledger " + ("balanced" if g["ledger_balanced"] else "**NOT balanced**")
        if g.get("dead_lettered"):
            text += f", {g['dead_lettered']} dead-lettered"
        parts.append(("" if g["applied_once"] else "**no**: ") + text)
    return "; ".join(parts) or "–"


def table_cells(row):
    written = num(row["refused_written"] + row["unanswered_written"])
    unconfirmed = row.get("refused_written_by_code", {}).get("50307", 0)
    if unconfirmed:
        written += f" ({unconfirmed:,} of them 50307 \"unconfirmed\")"
    refused = num(row["refused"])
    if row["unanswered"]:
        refused += f" (+{row['unanswered']:,} unanswered)"
    dup = num(row["duplicated"])
    if row["duplicated"]:
        dup = f"**{dup}** ({row['duplicated_acknowledged']:,} acknowledged)"
    lost = f"**{row['lost']:,}**" if row["lost"] else "0"
    impaired = num(row.get("impaired_until_s")) if row["recovery_kind"] == "ingest" else "–"
    recover = "–" if row["fault"] == "baseline" else num(row.get("recover_s"))
    return (row["fault"], num(row["acknowledged"]), lost, dup, refused, written,
            num(row.get("window_503_s")), recover, impaired, effects_cell(row))


# ---- render ---------------------------------------------------------------------------------------------
def read_meta(raw):
    meta = {}
    with open(os.path.join(raw, "meta.env"), encoding="utf-8") as f:
        for line in f:
            key, sep, value = line.rstrip("\n").partition("=")
            if sep:
                meta[key] = value
    return meta


def read_rows(raw):
    with open(os.path.join(raw, "rows.jsonl"), encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def verdicts(rows):
    lost = [r["fault"] for r in rows if r["lost"]]
    dup = [f"{r['fault']} ({r['duplicated']})" for r in rows if r["duplicated"]]
    broker = [r for r in rows if r["fault"] in BROKER_FAULTS]
    refused = [refused_note(r) for r in broker if r["refused"] + r["unanswered"]]
    resume = [r for r in rows if r["recovery_kind"] != "ingest"]
    slow = [f"{r['fault']} ({num(r['recover_s'])} s)" for r in resume
            if r.get("recover_s") is None or r["recover_s"] > TARGET_RESUME_S]
    effects = [r["fault"] for r in rows if not all(g["applied_once"] for g in r.get("groups", {}).values())]

    def verdict(bad):
        return "**met**" if not bad else "**not met**: " + ", ".join(bad)

    return [
        ("0 acknowledged events lost in every fault run", verdict(lost)),
        ("0 duplicated in every fault run", verdict(dup)),
        ("Writes to partitions with a live leader never refused while another broker is down (judged here as: no refusal at all during the broker faults; the refused-but-written events show on which partitions refusals fell)", verdict(refused)),
        (f"A killed group processes again within {TARGET_RESUME_S:g} s of its restart; after a PostgreSQL outage, within {TARGET_RESUME_S:g} s of it coming back", verdict(slow)),
        ("Effects applied exactly once (every event a processed_events row and its own rows; ledger balanced)", verdict(effects)),
    ]


def refused_note(row):
    text = f"{row['fault']} ({row['refused'] + row['unanswered']:,} refused"
    lead = row.get("victim_leadership")
    if lead and lead["refused_written"]["other_led"]:
        text += f"; {lead['refused_written']['other_led']:,} of the refused-but-written on partitions whose leader stayed up"
    return text + ")"


def detail(row):
    out = [f"### {row['fault']}", ""]
    out.append("Timeline (seconds from the first request): " + "; ".join(
        f"{m['t_s']:.1f} {m['mark']}" + (f" ({m['note']})" if m["note"] else "") for m in row["timeline"]) + ".")
    load = row.get("load") or {}
    out.append(f"Load: {row['sent']:,} requests in {row['load_s']:.1f} s, {load.get('skipped', 0):,} skipped (in-flight bound); "
               f"statuses {json.dumps(row['statuses'])}, error codes {json.dumps(row['error_codes'])}.")
    out.append(f"Acknowledgement latency: p50 {num(row['ack_p50_ms'])} ms, p99 {num(row['ack_p99_ms'])} ms, max {num(row['ack_max_ms'])} ms; "
               f"{row['acknowledged_slow']:,} acknowledged slower than {row['slow_ms']:g} ms. "
               f"({row.get('acknowledged_slow_before_fault', 0):,} of them before the fault). "
               f"Writes accepted again {num(row['ingest_recover_s'])} s after the fault, impaired until {num(row.get('impaired_until_s'))} s. "
               f"503s: {row['count_503']:,}, from {num(row['first_503_after_fault_s'])} s to {num(row.get('last_503_after_fault_s'))} s after the fault.")
    out.append(f"Read back: {row['readback']['records']:,} records; refused but written {row['refused_written']}, "
               f"(by code {json.dumps(row.get('refused_written_by_code', {}))}), unanswered but written {row['unanswered_written']}; 202s whose partition/offset holds no copy: {row['ack_offset_without_copy']}.")
    lead = row.get("victim_leadership")
    if lead and row["refused_written"]:
        split = lead["refused_written"]
        out.append(f"Of the refused-but-written events, {split['victim_led']:,} are on partitions broker {lead['victim']} led before the fault "
                   f"and {split['other_led']:,} on partitions other brokers led (their leader never went away).")
    if row["duplicates_sample"]:
        out.append("Duplicates (sample): " + "; ".join(
            f"`{d['id']}` at {', '.join(d['copies'])}" for d in row["duplicates_sample"]) + ".")
    for name, g in sorted(row.get("groups", {}).items()):
        extras = {k: v for k, v in g.items() if k not in ("events", "processed_once", "applied_once")}
        out.append(f"- {name}: {g['processed_once']:,} of {g['events']:,} events processed once; " +
                   ", ".join(f"{k} {json.dumps(v)}" for k, v in extras.items()))
    cpu = row.get("cpu")
    if cpu:
        cores = ", ".join(f"{k} {v:.2f}" for k, v in cpu["cores"].items())
        out.append(f"- CPU over the load (cores of {os.cpu_count()}): {cores}; outside the chaos stack {cpu['other_cores']:.2f}; machine busy {cpu['machine_busy_pct']} %.")
    out.append(f"- Groups settled {row['settled_s']:.1f} s after the load stopped.")
    out.append("")
    return out


def render_md(meta, rows, raw):
    stamp = os.path.basename(raw.rstrip("/"))
    md = ["# Fault suite", "",
          f"Generated by `{meta.get('command', 'scripts/chaos')}` on {meta.get('date', '?')}. "
          f"Machine-readable: [`chaos.json`](chaos.json). Raw logs (services, load, verify, marks): "
          f"`.stack-chaos/runs/{stamp}` (not in git).", "",
          "## Results", "",
          "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        md.append("| " + " | ".join(table_cells(row)) + " |")
    md += ["", "## Against the targets", "", "| Target | Verdict |", "|---|---|"]
    md += [f"| {t} | {v} |" for t, v in verdicts(rows)]
    md += ["", "## What the columns mean", "",
           "- **Acknowledged**: 202 answers. Each request carries a fresh event `id`; the load sends no retries.",
           "- **Lost**: acknowledged ids not found in the topics by a `read_committed` consumer assigned every partition from the end offsets recorded before the run's first request.",
           "- **Duplicated**: run ids found more than once in the topics (acknowledged or not); the detail gives where the copies are.",
           "- **Refused**: non-2xx answers; requests that got no answer within 20 s (connection error, client timeout) are added as *unanswered*.",
           "- **Refused but written**: refused or unanswered ids that the topics hold all the same. A 503 with error code 50307 says the broker had not acknowledged the event by the ingest's ack timeout and that it may still be written (retry with the same id), so those are written by contract; any other refusal found written would contradict its answer.",
           "- **503 window**: first to last 503 answer.",
           "- **Time to recover**: broker and Redis faults: from the fault to the first 202 answered after the last refused or unanswered request (writes accepted again); 0 when no request failed. Consumer kills: from the restart of the group to its first event processed (`processed_events.processed_at`). PostgreSQL: from PostgreSQL accepting connections again to the moment every group processed an event again.",
           f"- **Impaired until**: broker and Redis faults: from the fault to the answer of the last request that was refused, unanswered or acknowledged slower than {meta.get('slow_ms', '1000')} ms (the restart of a killed broker and its return to the ISR included); 0 when none was. The baseline row shows how many slow acknowledgements the load has without a fault.",
           "- **Effects applied once**: for every event the topics hold, the group's `processed_events` row (its primary key makes it once at most) and its own rows: a `user_profiles` row per `user.created`; per `payment.initiated` one `payments` decision, two ledger entries per completed payment, and the whole ledger consistent (each payment's pair nets to 0, each currency's balances sum to 0, each wallet's balance equals its entries).",
           ""]
    md += setup(meta, rows)
    md += ["## Per fault", ""]
    for row in rows:
        md += detail(row)
    return "\n".join(md).rstrip() + "\n"


def cpu_note(rows):
    busy = [r["cpu"]["machine_busy_pct"] for r in rows if r.get("cpu")]
    other = [r["cpu"]["other_cores"] for r in rows if r.get("cpu")]
    if not busy:
        return ""
    return (f" Over the loads the machine was {min(busy):g}–{max(busy):g} % busy, of which {min(other):.2f}–{max(other):.2f} cores "
            "outside the chaos stack: the suite runs the CPUs at saturation, so acknowledgements take hundreds of milliseconds "
            "even without a fault (the baseline row) and every recovery figure includes waiting for CPU.")


def setup(meta, rows):
    return [
        "## Setup", "",
        f"- Machine: {meta.get('nproc')} CPUs ({meta.get('cpu')}), {meta.get('memory')}, {meta.get('kernel')}. "
        "The three brokers, the registry, Redis, PostgreSQL, the ingest, both groups and the load generator share these CPUs, "
        "and so do the development stack and whatever else runs on the machine (builds, tests): every figure is a same-machine figure "
        f"(per-run CPU split below). Load average before {meta.get('loadavg_before')}, after {meta.get('loadavg_after')}." + cpu_note(rows),
        f"- Versions: {meta.get('rustc')}; {meta.get('java')}; {meta.get('kafka')}; commit {meta.get('commit')}; binaries built {meta.get('binaries_built')}.",
        f"- Stack (`CIRC_STACK_DIR=.stack-chaos scripts/stack up --brokers 3` on ports of its own): three KRaft nodes, each broker and controller, replication factor 3, "
        f"min.insync.replicas 2, unclean leader election off; checked before the runs: {meta.get('topics')}.",
        f"- Services from target/release: `ingest` (default settings), `user-lifecycle` and `payments` with `CIRC_INSTANCE_ID=<group>-0` (static membership), restarted with the same id.",
        f"- Load (`chaos load`): {meta.get('rate')} events/s open loop, alternately `user.created` (a new user) and `payment.initiated` "
        f"(top-ups and tips on 32 wallets), at most {meta.get('max_in_flight')} requests in flight, no retries. The fault comes {meta.get('fault_at')} s "
        f"into the load; the load stops at {meta.get('load_secs')} s or {meta.get('tail_secs')} s after the last recovery step, whichever is later. "
        f"Brokers stay down {meta.get('broker_down_secs')} s, a killed group {meta.get('consumer_down_secs')} s, Redis {meta.get('redis_down_secs')} s, "
        f"PostgreSQL {meta.get('pg_down_secs')} s.",
        "",
    ]


def cmd_render(raw, md_out, json_out):
    meta = read_meta(raw)
    rows = read_rows(raw)
    doc = {"generated_by": meta.get("command"), "date": meta.get("date"), "meta": meta,
           "targets": {"lost": 0, "duplicated": 0, "resume_s": TARGET_RESUME_S},
           "verdicts": [{"target": t, "verdict": v} for t, v in verdicts(rows)], "rows": rows}
    with open(json_out, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
    with open(md_out, "w", encoding="utf-8") as f:
        f.write(render_md(meta, rows, raw))


def main(argv):
    if len(argv) == 3 and argv[1] == "row":
        cmd_row(argv[2])
    elif len(argv) == 3 and argv[1] == "line":
        cmd_line(argv[2])
    elif len(argv) == 5 and argv[1] == "render":
        cmd_render(argv[2], argv[3], argv[4])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
