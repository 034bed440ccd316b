#!/usr/bin/env python3
"""Summaries for bench/run.sh.

  report.py line RECORD_JSON          one line about one raw measurement
  report.py report META RAW OUT       medians, ratios and the table; writes OUT

A raw record is one JSON line written by run.sh:
  {"probe", "who": ours|blackbox|ceiling|ours_hold|blackbox_hold|skipped, "repeat", ...}
"""
import json
import statistics
import sys


def metrics(rec):
    """The comparable figures of one raw record."""
    m = _metrics(rec)
    if "busy_before_pct" in rec:
        m["machine_busy_before_pct"] = rec["busy_before_pct"]
    return m


def _metrics(rec):
    who = rec["who"]
    if who == "ours":
        r = rec["run"]
        n = r["checks"]
        up = r["status"].get("up", 0) + r["status"].get("degraded", 0)
        return {
            "checks": n,
            "checks_per_s": r["checks_per_s"],
            "cpu_s_per_1000": r["cpu_s_per_1000"],
            "peak_rss_mib": r["peak_rss_kib"] / 1024,
            "p50_ms": r["latency_ms"]["p50"],
            "p99_ms": r["latency_ms"]["p99"],
            "success_pct": 100.0 * up / n if n else 0.0,
        }
    if who in ("blackbox", "ceiling"):
        w = rec["wrk"]
        n = w["requests"]
        m = {
            "checks": n,
            "checks_per_s": n / w["duration_s"] if w["duration_s"] else 0.0,
            "p50_ms": w["latency_ms"]["p50"],
            "p99_ms": w["latency_ms"]["p99"],
            "success_pct": 100.0 * w["ok"] / n if n else 0.0,
        }
        if who == "blackbox":
            cpu = rec["cpu_ticks"] / rec["clk_tck"]
            m["cpu_s_per_1000"] = cpu * 1000.0 / n if n else None
            m["peak_rss_mib"] = rec["peak_rss_kib"] / 1024
        return m
    if who == "ours_hold":
        r = rec["run"]
        return {
            "in_flight": r["in_flight"],
            "kib_per_in_flight": r["rss_per_inflight_kib"],
            "marginal_kib_per_in_flight": r["marginal_rss_per_inflight_kib"],
            "heap_kib_per_in_flight": (r["heap_per_inflight_bytes"] / 1024
                                       if r.get("heap_per_inflight_bytes") is not None else None),
            "settled": r["settled"],
        }
    if who == "blackbox_hold":
        n = rec["in_flight"]
        return {
            "in_flight": n,
            "kib_per_in_flight": (rec["rss_all_kib"] - rec["rss_idle_kib"]) / n if n else None,
            "settled": rec["settled"],
        }
    return {}


def line(rec):
    text = _line(rec)
    if "busy_before_pct" in rec:
        text += f" [machine {rec['busy_before_pct']}% busy before]"
    return text


def _line(rec):
    who, p = rec["who"], rec.get("probe", "?")
    if who == "skipped":
        return rec["reason"]
    m = metrics(rec)
    if who == "ours":
        r = rec["run"]
        return (f"ours      {p} #{rec['repeat']}: {m['checks_per_s']:.0f} checks/s, "
                f"{m['cpu_s_per_1000']:.3f} CPU-s/1000, peak RSS {m['peak_rss_mib']:.1f} MiB, "
                f"p50 {m['p50_ms']:.2f} ms, p99 {m['p99_ms']:.2f} ms, {r['status']} {r['reasons'] or ''}")
    if who == "blackbox":
        w = rec["wrk"]
        return (f"blackbox  {p} #{rec['repeat']}: {m['checks_per_s']:.0f} probes/s, "
                f"{m['cpu_s_per_1000']:.3f} CPU-s/1000, peak RSS {m['peak_rss_mib']:.1f} MiB, "
                f"p50 {m['p50_ms']:.2f} ms, p99 {m['p99_ms']:.2f} ms, ok {w['ok']} bad {w['bad']}")
    if who == "ceiling":
        return (f"ceiling   {p} #{rec['repeat']}: {m['checks_per_s']:.0f} requests/s "
                f"(wrk, Connection: close, straight at nginx), non-200 {rec['wrk']['bad']}")
    if who == "ours_hold":
        return (f"ours hold {p} #{rec['repeat']}: {m['in_flight']} in flight, "
                f"{m['kib_per_in_flight']:.2f} KiB each (marginal {m['marginal_kib_per_in_flight']:.2f}, "
                f"malloc'd {fmt(m['heap_kib_per_in_flight'], '.2f')}), settled={m['settled']}")
    if who == "blackbox_hold":
        k = m["kib_per_in_flight"]
        return (f"blackbox hold {p} #{rec['repeat']}: {m['in_flight']} in flight, "
                f"{k:.2f} KiB each, settled={m['settled']}" if k is not None else
                f"blackbox hold {p} #{rec['repeat']}: nothing in flight")
    return json.dumps(rec)


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
    probes, skipped = {}, []
    for rec in records:
        if rec["who"] == "skipped":
            skipped.append({"probe": rec["probe"], "reason": rec["reason"]})
            continue
        p = probes.setdefault(rec["probe"], {"runs": {}})
        p["runs"].setdefault(rec["who"], []).append({"raw": rec, "metrics": metrics(rec)})

    for name, p in probes.items():
        med = {}
        for who, runs in p["runs"].items():
            keys = runs[0]["metrics"].keys()
            med[who] = {k: median([r["metrics"][k] for r in runs]) for k in keys
                        if k != "settled"}
            med[who]["repeats"] = len(runs)
            if any(k == "settled" for k in keys):
                med[who]["all_settled"] = all(r["metrics"]["settled"] for r in runs)
        p["median"] = med
        o, b, c = med.get("ours", {}), med.get("blackbox", {}), med.get("ceiling", {})
        p["ratios"] = {
            "rate_ours_over_blackbox": ratio(o.get("checks_per_s"), b.get("checks_per_s")),
            "cpu_per_check_ours_over_blackbox": ratio(o.get("cpu_s_per_1000"), b.get("cpu_s_per_1000")),
            "peak_rss_ours_over_blackbox": ratio(o.get("peak_rss_mib"), b.get("peak_rss_mib")),
        }
        if c:
            p["ratios"]["rate_ours_over_ceiling"] = ratio(o.get("checks_per_s"), c.get("checks_per_s"))
            p["ratios"]["rate_blackbox_over_ceiling"] = ratio(b.get("checks_per_s"), c.get("checks_per_s"))
        oh, bh = med.get("ours_hold", {}), med.get("blackbox_hold", {})
        if oh and bh:
            p["ratios"]["kib_per_in_flight_ours_over_blackbox"] = ratio(
                oh.get("kib_per_in_flight"), bh.get("kib_per_in_flight"))
        # The goals of issue 3.
        goals = {}
        r = p["ratios"]
        if r["rate_ours_over_blackbox"] is not None:
            goals["rate_at_least_2x_blackbox"] = r["rate_ours_over_blackbox"] >= 2.0
        if r["cpu_per_check_ours_over_blackbox"] is not None:
            goals["cpu_per_check_at_most_a_third_of_blackbox"] = r["cpu_per_check_ours_over_blackbox"] <= 1 / 3
        if name == "web" and oh.get("kib_per_in_flight") is not None:
            goals["under_16_kib_per_in_flight_web_check"] = oh["kib_per_in_flight"] < 16
        p["goals"] = goals

    result = dict(meta)
    result["probes"] = probes
    result["skipped"] = skipped
    with open(out_path, "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")

    m, prm = meta["machine"], meta["params"]
    print()
    print(f"guardant {meta['versions']['guardant']} vs blackbox_exporter "
          f"{meta['versions']['blackbox_exporter']}: {m['cores']} cores ({m['cpu']}), "
          f"{prm['checks']} checks at concurrency {prm['concurrency']}, "
          f"medians of {prm['repeats']} runs, loopback")
    hdr = f"{'probe':<6}{'who':<24}{'checks/s':>10}{'CPU-s/1000':>12}{'peak RSS MiB':>14}{'p50 ms':>9}{'p99 ms':>9}{'success':>9}"
    print(hdr)
    print("-" * len(hdr))
    labels = {"ours": "guardant", "blackbox": "blackbox_exporter", "ceiling": "ceiling (wrk→nginx)"}
    for name, p in probes.items():
        for who in ("ours", "blackbox", "ceiling"):
            x = p["median"].get(who)
            if not x:
                continue
            print(f"{name:<6}{labels[who]:<24}{fmt(x.get('checks_per_s'), '.0f'):>10}"
                  f"{fmt(x.get('cpu_s_per_1000'), '.3f'):>12}{fmt(x.get('peak_rss_mib'), '.1f'):>14}"
                  f"{fmt(x.get('p50_ms'), '.2f'):>9}{fmt(x.get('p99_ms'), '.2f'):>9}"
                  f"{fmt(x.get('success_pct'), '.1f') + '%':>9}")
        r = p["ratios"]
        parts = [f"rate {fmt(r['rate_ours_over_blackbox'], '.2f')}x",
                 f"CPU/check {fmt(r['cpu_per_check_ours_over_blackbox'], '.2f')}x",
                 f"peak RSS {fmt(r['peak_rss_ours_over_blackbox'], '.2f')}x"]
        if "rate_ours_over_ceiling" in r:
            parts.append(f"ours at {fmt(100 * (r['rate_ours_over_ceiling'] or 0), '.0f')}% of the ceiling")
        print(f"{'':<6}ours/blackbox: " + ", ".join(parts))
        oh, bh = p["median"].get("ours_hold"), p["median"].get("blackbox_hold")
        if oh:
            s = (f"{'':<6}held in flight: guardant {fmt(oh['in_flight'], '.0f')} checks, "
                 f"{fmt(oh['kib_per_in_flight'], '.2f')} KiB each "
                 f"(marginal {fmt(oh.get('marginal_kib_per_in_flight'), '.2f')}, "
                 f"malloc'd {fmt(oh.get('heap_kib_per_in_flight'), '.2f')})")
            if bh:
                s += (f"; blackbox {fmt(bh['in_flight'], '.0f')} probes, "
                      f"{fmt(bh['kib_per_in_flight'], '.2f')} KiB each")
            print(s)
        if p["goals"]:
            print(f"{'':<6}goals: " + ", ".join(f"{k}={'yes' if v else 'NO'}" for k, v in p["goals"].items()))
    for s in skipped:
        print(f"skipped: {s['reason']}")
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
