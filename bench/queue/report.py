#!/usr/bin/env python3
"""Summaries for bench/queue/run.sh.

  report.py line RECORD_JSON          one line about one drain (drain.mjs output)
  report.py report META RAW OUT       medians, ratios and the table; writes OUT

A raw record is one drain.mjs JSON line plus run.sh's busy_before_pct and
loadavg_before; records with "monitor" are the untimed protocol runs.
"""
import json
import statistics
import sys


def metrics(rec):
    n = rec["jobs"]
    calls = sum(c["calls"] for c in rec["commands"].values())
    return {
        "jobs": n,
        "jobs_per_s": rec["jobs_per_s"],
        "seconds": rec["seconds"],
        "worker_cpu_s_per_1000": rec["worker_cpu_s"] * 1000.0 / n,
        "redis_cpu_s_per_1000": rec["redis_cpu_s"] * 1000.0 / n,
        "worker_peak_rss_mib": rec["worker_peak_rss_kib"] / 1024,
        "redis_peak_rss_mib": rec["redis_peak_rss_kib"] / 1024,
        # RSS when ready, and its growth over the drain per 1,000 jobs.
        "worker_rss_ready_mib": rec["worker_rss_ready_kib"] / 1024,
        "worker_rss_growth_kib_per_1000": ((rec["worker_rss_end_kib"] - rec["worker_rss_ready_kib"])
                                           * 1000.0 / n),
        "redis_calls_per_job": calls / n,
        "scripts_per_job": sum(rec["commands"].get(k, {}).get("calls", 0)
                               for k in ("evalsha", "eval", "fcall")) / n,
        "script_usec_per_job": sum(rec["commands"].get(k, {}).get("usec", 0)
                                   for k in ("evalsha", "eval", "fcall")) / n,
        "worker_user_share": (rec["worker_user_s"] / rec["worker_cpu_s"]
                              if rec.get("worker_cpu_s") else None),
        "redis_user_share": (rec["redis_user_s"] / rec["redis_cpu_s"]
                             if rec.get("redis_cpu_s") else None),
        "worker_sched_cpu_s_per_1000": rec["worker_sched_cpu_s"] * 1000.0 / n,
        "redis_net_in_bytes_per_job": rec["redis_net_in_bytes"] / n,
        "redis_net_out_bytes_per_job": rec["redis_net_out_bytes"] / n,
        "returnvalue_bytes": rec["returnvalue_bytes"],
        "failed": rec["failed"],
        "machine_busy_before_pct": rec.get("busy_before_pct"),
        "load1_before": (rec.get("loadavg_before") or [None])[0],
    }


def line(rec):
    m = metrics(rec)
    who = f"{rec['impl']:<4} {rec['kind']:<7} c={rec['concurrency']:<3}"
    if "monitor" in rec:
        mon = rec["monitor"]
        cl = sum(mon["client"].values()) / rec["jobs"]
        lua = sum(mon["lua"].values()) / rec["jobs"]
        top = ", ".join(f"{k} {v / rec['jobs']:.2f}" for k, v in
                        sorted(mon["client"].items(), key=lambda kv: -kv[1])[:4])
        return (f"{who} protocol: {cl:.2f} commands/job from the worker ({top}), "
                f"{lua:.1f} calls/job inside scripts, {mon['worker_connections_seen']} connection(s)")
    text = (f"{who} #{rec['repeat']}: {m['jobs_per_s']:.0f} jobs/s, worker "
            f"{m['worker_cpu_s_per_1000']:.3f} CPU-s/1000, Redis {m['redis_cpu_s_per_1000']:.3f} "
            f"CPU-s/1000, peak RSS {m['worker_peak_rss_mib']:.1f} MiB, "
            f"{m['redis_calls_per_job']:.1f} Redis calls/job, {rec['completed']} completed")
    if rec["failed"]:
        text += f", {rec['failed']} FAILED"
    if "busy_before_pct" in rec:
        text += f" [machine {rec['busy_before_pct']}% busy before, load {rec['loadavg_before'][0]}]"
    return text


def median(values):
    values = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return statistics.median(values) if values else None


def ratio(a, b):
    return a / b if a is not None and b else None


def fmt(v, spec):
    return format(v, spec) if isinstance(v, (int, float)) else "-"


def report(meta_path, raw_path, out_path):
    meta = json.load(open(meta_path))
    records = [json.loads(l) for l in open(raw_path) if l.strip()]
    groups = {}  # (kind, concurrency) -> impl -> [records]
    protocol = {}  # concurrency -> impl -> record
    for rec in records:
        if "monitor" in rec:
            protocol.setdefault(str(rec["concurrency"]), {})[rec["impl"]] = rec
        else:
            groups.setdefault((rec["kind"], rec["concurrency"]), {}).setdefault(
                rec["impl"], []).append(rec)

    results = []
    for (kind, c), impls in sorted(groups.items(), key=lambda kv: (kv[0][0] != "trivial", kv[0][1])):
        entry = {"kind": kind, "concurrency": c, "median": {}, "runs": {}}
        for impl, runs in impls.items():
            ms = [metrics(r) for r in runs]
            med = {k: median([m[k] for m in ms]) for k in ms[0]}
            med["repeats"] = len(runs)
            med["failed_total"] = sum(r["failed"] for r in runs)
            # Calls of each Redis command per job (scripts' own calls included).
            names = sorted({n for r in runs for n in r["commands"]})
            med["commands_per_job"] = {
                n: median([r["commands"].get(n, {}).get("calls", 0) / r["jobs"] for r in runs])
                for n in names}
            entry["median"][impl] = med
            entry["runs"][impl] = runs
        o, n = entry["median"].get("ours", {}), entry["median"].get("node", {})
        entry["ratios_ours_over_node"] = {
            k: ratio(o.get(k), n.get(k)) for k in
            ("jobs_per_s", "worker_cpu_s_per_1000", "redis_cpu_s_per_1000", "worker_peak_rss_mib",
             "redis_calls_per_job", "script_usec_per_job", "redis_net_in_bytes_per_job",
             "redis_net_out_bytes_per_job")}
        r = entry["ratios_ours_over_node"]
        goals = {}
        if r["worker_cpu_s_per_1000"] is not None:
            goals["worker_cpu_per_job_at_most_a_fifth_of_node"] = r["worker_cpu_s_per_1000"] <= 0.2
        if r["worker_peak_rss_mib"] is not None:
            goals["peak_rss_at_most_a_fifth_of_node"] = r["worker_peak_rss_mib"] <= 0.2
        if r["redis_cpu_s_per_1000"] is not None:
            goals["redis_cpu_per_job_below_node"] = r["redis_cpu_s_per_1000"] < 1.0
        if c == 100 and r["jobs_per_s"] is not None:
            goals["rate_at_least_1_5x_node_at_c100"] = r["jobs_per_s"] >= 1.5
        entry["goals"] = goals
        results.append(entry)

    proto = {}
    for c, impls in sorted(protocol.items(), key=lambda kv: int(kv[0])):
        proto[c] = {}
        for impl, rec in impls.items():
            mon, n = rec["monitor"], rec["jobs"]
            proto[c][impl] = {
                "jobs": n,
                "worker_commands_per_job": sum(mon["client"].values()) / n,
                "worker_commands_per_job_by_name": {k: v / n for k, v in sorted(mon["client"].items())},
                "script_calls_per_job": sum(mon["lua"].values()) / n,
                "script_calls_per_job_by_name": {k: v / n for k, v in sorted(mon["lua"].items())},
                "worker_connections_seen": mon["worker_connections_seen"],
                "raw": rec,
            }

    out = dict(meta)
    out["results"] = results
    out["protocol"] = proto
    with open(out_path, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")

    m, v = meta["machine"], meta["versions"]
    print()
    print(f"guardant {v['guardant']} vs bullmq {v['bullmq']} Worker (node {v['node']}), redis {v['redis']}: "
          f"{m['cores']} cores ({m['cpu']}), medians of {meta['params']['repeats']} drains, loopback")
    hdr = (f"{'kind':<8}{'c':>4} {'worker':<7}{'jobs':>7}{'jobs/s':>9}{'worker CPU-s/1k':>16}"
           f"{'Redis CPU-s/1k':>15}{'peak RSS MiB':>13}{'ready MiB':>10}{'+KiB/1k jobs':>13}"
           f"{'Redis calls/job':>16}{'busy%':>7}")
    print(hdr)
    print("-" * len(hdr))
    for e in results:
        for impl in ("ours", "node"):
            x = e["median"].get(impl)
            if not x:
                continue
            print(f"{e['kind']:<8}{e['concurrency']:>4} {impl:<7}{fmt(x['jobs'], '.0f'):>7}"
                  f"{fmt(x['jobs_per_s'], '.0f'):>9}{fmt(x['worker_cpu_s_per_1000'], '.3f'):>16}"
                  f"{fmt(x['redis_cpu_s_per_1000'], '.3f'):>15}{fmt(x['worker_peak_rss_mib'], '.1f'):>13}"
                  f"{fmt(x['worker_rss_ready_mib'], '.1f'):>10}{fmt(x['worker_rss_growth_kib_per_1000'], '.0f'):>13}"
                  f"{fmt(x['redis_calls_per_job'], '.1f'):>16}{fmt(x['machine_busy_before_pct'], '.0f'):>7}"
                  + (f"  {x['failed_total']} FAILED" if x["failed_total"] else ""))
        r = e["ratios_ours_over_node"]
        print(f"{'':<13}ours/node: rate {fmt(r['jobs_per_s'], '.2f')}x, worker CPU/job "
              f"{fmt(r['worker_cpu_s_per_1000'], '.3f')}x, Redis CPU/job {fmt(r['redis_cpu_s_per_1000'], '.3f')}x, "
              f"peak RSS {fmt(r['worker_peak_rss_mib'], '.3f')}x; script time in Redis "
              f"{fmt(e['median'].get('ours', {}).get('script_usec_per_job'), '.1f')} vs "
              f"{fmt(e['median'].get('node', {}).get('script_usec_per_job'), '.1f')} us/job")
        if e["goals"]:
            print(f"{'':<13}goals: " + ", ".join(f"{k}={'yes' if ok else 'NO'}" for k, ok in e["goals"].items()))
    if proto:
        print()
        print("protocol (MONITOR, untimed, trivial jobs): commands per job sent by the worker; "
              "calls per job inside scripts")
        for c, impls in proto.items():
            for impl, p in impls.items():
                by = ", ".join(f"{k} {v:.3f}" for k, v in
                               sorted(p["worker_commands_per_job_by_name"].items(), key=lambda kv: -kv[1]))
                print(f"  c={c:<4}{impl:<5} {p['worker_commands_per_job']:.3f} ({by}); "
                      f"{p['script_calls_per_job']:.1f} in scripts")
    print()


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "line":
        print(line(json.loads(sys.argv[2])))
    elif len(sys.argv) == 5 and sys.argv[1] == "report":
        report(*sys.argv[2:])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
