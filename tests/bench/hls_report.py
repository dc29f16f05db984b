#!/usr/bin/env python3
"""Records and summarizes the runs of tests/bench/hls.sh.

  hls_report.py record RESULTS KEY=VALUE... load=FILE sample=FILE
      appends one JSON line to RESULTS: the KEY=VALUE fields (case, server, rep, viewers,
      idle_rss_kib), the load tool's report without its per-player array and the window
      sample of sample_procs.py; prints a one-line digest of the run.
  hls_report.py summary RESULTS
      prints a Markdown table of the medians over the repeats of every case, and each case's
      CPU per delivered Gbit/s against streamgate's HTTP-FLV in the same runs.
"""

import json
import statistics
import sys


def num(v):
    for f in (int, float):
        try:
            return f(v)
        except ValueError:
            pass
    return v


def load_json(path):
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("{"):
            r = json.loads(line)
            r.pop("per_player", None)
            return r
    return None


def derive(r):
    """The figures of one run, from its load report and window sample."""
    load, sample = r.get("load") or {}, r.get("sample") or {}
    win = load.get("window") or {}
    srv = (sample.get("groups") or {}).get("server") or {}
    tool = (sample.get("groups") or {}).get("tool") or {}
    n = r["viewers"]
    gbps = win.get("gbps") or 0.0
    cpu_s = srv.get("cpu_s") or 0.0
    length = sample.get("len_s") or 1.0
    delivered_gbit = (win.get("media_bytes") or 0) * 8 / 1e9
    hls = load.get("hls") or {}
    wall = load.get("wall_s") or 1.0
    return {
        "through": win.get("players_through") or 0,
        "errors": load.get("errors"),
        "gbps": gbps,
        "cores": srv.get("cores") or 0.0,
        "cpu_per_gbit": cpu_s / delivered_gbit if delivered_gbit else None,
        "rss_per_viewer_kib": ((srv.get("rss_kib_mean") or 0) - r.get("idle_rss_kib", 0)) / n,
        "rss_mib": (srv.get("rss_kib_mean") or 0) / 1024,
        "req_per_viewer_s": hls.get("requests", 0) / n / wall if hls else None,
        "playlist_kbps_per_viewer": hls.get("playlist_bytes", 0) * 8 / 1e3 / n / wall if hls else None,
        "tool_cores": tool.get("cores") or 0.0,
        "machine_busy": sample.get("machine_busy"),
        "first_key_p50": (load.get("first_keyframe_ms") or {}).get("p50"),
        "window_len": length,
    }


def record(results, args):
    rec = {}
    for a in args:
        k, _, v = a.partition("=")
        if k in ("load", "sample"):
            rec[k] = load_json(v)
        else:
            rec[k] = num(v)
    with open(results, "a") as f:
        f.write(json.dumps(rec) + "\n")
    d = derive(rec)
    cpg = "?" if d["cpu_per_gbit"] is None else f"{d['cpu_per_gbit']:.2f}"
    print(
        f"   {rec['case']:<10} {rec['server']:<11} run {rec['rep']}: {d['through']}/{rec['viewers']} through the window, "
        f"{d['errors']} errors, {d['gbps']:.3f} Gbit/s, server {d['cores']:.2f} cores = {cpg} CPU s per Gbit, "
        f"RSS {d['rss_mib']:.1f} MiB ({d['rss_per_viewer_kib']:.1f} KiB per viewer), tool {d['tool_cores']:.2f} cores, "
        f"machine {d['machine_busy']}"
    )


def med(values):
    v = [x for x in values if x is not None]
    return statistics.median(v) if v else None


def fmt(v, spec):
    return "–" if v is None else format(v, spec)


def summary(results):
    runs = [json.loads(line) for line in open(results) if line.strip()]
    cases = []
    for r in runs:
        key = (r["case"], r["server"])
        if key not in cases:
            cases.append(key)
    by = {k: [derive(r) for r in runs if (r["case"], r["server"]) == k] for k in cases}
    flv = by.get(("flv", "streamgate"))
    flv_cpg = med([d["cpu_per_gbit"] for d in flv]) if flv else None
    print("| case | server | viewers through the window | Gbit/s delivered | server cores | CPU s per delivered Gbit | × streamgate HTTP-FLV | RSS per viewer | requests per viewer per s | playlist kbit/s per viewer | runs |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for (case, server), ds in by.items():
        n = runs[[(r["case"], r["server"]) for r in runs].index((case, server))]["viewers"]
        cpg = med([d["cpu_per_gbit"] for d in ds])
        ratio = cpg / flv_cpg if cpg and flv_cpg else None
        print(
            f"| {case} | {server} | {fmt(med([d['through'] for d in ds]), '.0f')} / {n} | "
            f"{fmt(med([d['gbps'] for d in ds]), '.3f')} | {fmt(med([d['cores'] for d in ds]), '.2f')} | "
            f"{fmt(cpg, '.2f')} | {fmt(ratio, '.2f')} | "
            f"{fmt(med([d['rss_per_viewer_kib'] for d in ds]), '.1f')} KiB | "
            f"{fmt(med([d['req_per_viewer_s'] for d in ds]), '.2f')} | "
            f"{fmt(med([d['playlist_kbps_per_viewer'] for d in ds]), '.1f')} | {len(ds)} |"
        )
    errs = sum(d["errors"] or 0 for ds in by.values() for d in ds)
    print()
    print(f"Errors in all runs: {errs}. Medians over the runs; machine busy (all cores) "
          f"{fmt(med([d['machine_busy'] for ds in by.values() for d in ds]), '.2f')} median in the windows.")


def main():
    if len(sys.argv) >= 3 and sys.argv[1] == "record":
        record(sys.argv[2], sys.argv[3:])
    elif len(sys.argv) == 3 and sys.argv[1] == "summary":
        summary(sys.argv[2])
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
