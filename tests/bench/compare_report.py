#!/usr/bin/env python3
"""Records and summarizes the runs of tests/bench/compare.sh.

  compare_report.py record RESULTS KIND KEY=VALUE... [load=FILE] [load2=FILE] [sample=FILE]
                    [hook=FILE]
      appends one JSON line to RESULTS: the KEY=VALUE fields (numbers where they parse), the
      load tool's report(s) without the per-player array, the window sample of
      sample_procs.py and the hook server's /_stats; prints a one-line digest of the run.
  compare_report.py summary RESULTS
      prints the tables (medians over the repeats, ratios streamgate/nginx-rtmp and
      streamgate/SRS where SRS ran) as Markdown.
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
            text = f.read().strip()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("{"):
            r = json.loads(line)
            per = r.pop("per_player", None) or []
            # Players whose TCP connect took a second or more: a dropped SYN, retried.
            r["tcp_connect_over_1s"] = sum(1 for p in per if (p.get("tcp_connect_ms") or 0) >= 1000)
            return r
    return None


def dist(d, k):
    return None if not d else d.get(k)


def f2(v, nd=2):
    return "-" if v is None else ("%.*f" % (nd, v))


def digest(r):
    kind = r["kind"]
    L = r.get("load") or {}
    s = r.get("sample") or {}
    g = s.get("groups", {})
    parts = ["   %s %s %s" % (kind, r.get("case", ""), r.get("server", ""))]
    if L:
        parts.append(
            "%d/%d playing, %d errors" % (L.get("playing", 0), L.get("players", 0), L.get("errors", 0))
        )
        parts.append(
            "play start p50 %s p99 %s ms, first keyframe p50 %s p99 %s ms"
            % (
                f2(dist(L.get("play_start_ms"), "p50")),
                f2(dist(L.get("play_start_ms"), "p99")),
                f2(dist(L.get("first_keyframe_ms"), "p50")),
                f2(dist(L.get("first_keyframe_ms"), "p99")),
            )
        )
        for k, v in (L.get("error_kinds") or {}).items():
            parts.append("error x%d: %s" % (v, k))
    w = L.get("window") if L else None
    if w and g.get("server"):
        srv = g["server"]
        gbps = w["gbps"]
        parts.append(
            "window %.1f s: %.3f Gbit/s delivered, server %.1f%% of a core (%s per Gbit/s), RSS %.1f MiB (idle %.1f), tool %.1f%%, ffmpeg %.1f%%, machine busy %.0f%%"
            % (
                s["len_s"],
                gbps,
                100 * srv["cores"],
                f2(srv["cores"] / gbps if gbps else None, 3),
                srv["rss_kib_mean"] / 1024,
                (r.get("idle_rss_kib") or 0) / 1024,
                100 * g.get("tool", {}).get("cores", 0),
                100 * g.get("ffmpeg", {}).get("cores", 0),
                100 * (s.get("machine_busy") or 0),
            )
        )
    if r.get("hook"):
        h = r["hook"]
        part = "hook server (%s): %d requests, %.2f CPU s" % (h.get("server", "python"), h["requests"], h["cpu_s"])
        if h.get("loop_lag_max_ms") is not None:
            part += ", loop lag max %.1f ms" % h["loop_lag_max_ms"]
        parts.append(part)
    L2 = r.get("load2")
    if L2:
        parts.append(
            "new players: %d/%d playing, %d errors, play start p50 %s ms"
            % (L2.get("playing", 0), L2.get("players", 0), L2.get("errors", 0), f2(dist(L2.get("play_start_ms"), "p50")))
        )
    return "; ".join(parts)


def record(argv):
    results, kind = argv[0], argv[1]
    r = {"kind": kind}
    for a in argv[2:]:
        k, _, v = a.partition("=")
        if k in ("load", "load2"):
            r[k] = load_json(v)
        elif k in ("sample", "hook"):
            try:
                with open(v) as f:
                    r[k] = json.loads(f.read().strip() or "null")
            except (OSError, ValueError):
                r[k] = None
        else:
            r[k] = num(v)
    with open(results, "a") as f:
        f.write(json.dumps(r) + "\n")
    print(digest(r), flush=True)


# ----------------------------------------------------------------------------------------
# summary


def med(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def ratio(a, b):
    return None if a is None or b in (None, 0) else a / b


def fmt(v, nd=2):
    return "-" if v is None else "%.*f" % (nd, v)


def fx(v):
    return "-" if v is None else "%.2f×" % v


def eff_metrics(r):
    """Per-run figures of an efficiency run."""
    L = r.get("load") or {}
    s = r.get("sample") or {}
    g = s.get("groups", {})
    w = L.get("window") or {}
    srv = g.get("server", {})
    gbps = w.get("gbps")
    n = r.get("players") or L.get("players")
    rss = srv.get("rss_kib_mean")
    idle = r.get("idle_rss_kib")
    return {
        "playing": L.get("playing"),
        "errors": L.get("errors"),
        "through": w.get("players_through"),
        "gbps": gbps,
        "cores": srv.get("cores"),
        "sys_share": ratio(srv.get("sys_s"), srv.get("cpu_s")),
        "user_per_gbps": ratio(ratio(srv.get("user_s"), s.get("len_s")), gbps),
        "sys_per_gbps": ratio(ratio(srv.get("sys_s"), s.get("len_s")), gbps),
        "cpu_per_gbps": ratio(srv.get("cores"), gbps),
        "rss_mib": None if rss is None else rss / 1024,
        "idle_mib": None if idle is None else idle / 1024,
        "kib_per_player": None if rss is None or idle is None or not n else (rss - idle) / n,
        "ps50": dist(L.get("play_start_ms"), "p50"),
        "ps99": dist(L.get("play_start_ms"), "p99"),
        "kf50": dist(L.get("first_keyframe_ms"), "p50"),
        "kf99": dist(L.get("first_keyframe_ms"), "p99"),
        "gapmax": dist(w.get("max_frame_gap_ms"), "max"),
        "tool": g.get("tool", {}).get("cores"),
        "tool_self": L.get("tool_cpu_percent"),
        "ffmpeg": g.get("ffmpeg", {}).get("cores"),
        "busy": s.get("machine_busy"),
        "contended": 1 if (s.get("machine_busy") or 0) > 0.9 else 0,
    }


def medians(rows, fn):
    ms = [fn(r) for r in rows]
    keys = ms[0].keys() if ms else []
    return {k: med([m[k] for m in ms]) for k in keys}


# The servers compare.sh runs, in table order; streamgate's ratios are taken against each peer.
PEERS = ("nginx-rtmp", "srs-40", "srs-default", "gst-rtsp-server", "srs-srt")
SERVERS = PEERS + ("streamgate",)


def summary(argv):
    rows = [json.loads(l) for l in open(argv[0]) if l.strip()]
    out = []
    p = out.append

    eff = {}
    for r in rows:
        if r["kind"] == "eff":
            eff.setdefault((r["case"], r["server"]), []).append(r)
    E = {k: medians(v, eff_metrics) for k, v in eff.items()}
    reps = {k: len(v) for k, v in eff.items()}

    # Cases are named rtmpN, flvN and rtmpN_w2 by compare.sh, rtmpN_p, rtspN and srtN for the
    # run of every output protocol on one server (against that run's RTMP), and rtsppeerN,
    # rtspudppeerN and srtpeerN for RTSP and SRT beside a peer.
    def order(c):
        proto = c.startswith("rtsp") or c.startswith("srt") or c.endswith("_p")
        return ("peer" in c, proto, c.endswith("_w2"), c.startswith("flv"), c.startswith("srt"), c.startswith("rtsp"),
                int("".join(ch for ch in c.split("_")[0] if ch.isdigit()) or 0))
    names = sorted({c for c, _ in eff}, key=order)
    cases = []
    for c in names:
        n = "".join(ch for ch in c.split("_")[0] if ch.isdigit())
        if "peer" in c:
            what = "RTSP (UDP)" if c.startswith("rtspudp") else "RTSP (TCP)" if c.startswith("rtsp") else "SRT"
            cases.append((c, "%s %s players (peer run)" % (n, what), None))
        elif c.endswith("_w2"):
            cases.append((c, "%s RTMP players, `<workers>2</workers>`" % n, "rtmp" + n))
        elif c.startswith("flv"):
            cases.append((c, "%s HTTP-FLV players" % n, "rtmp" + n))
        elif c.endswith("_p"):
            cases.append((c, "%s RTMP players (protocol run)" % n, None))
        elif c.startswith("rtspudp"):
            cases.append((c, "%s RTSP (UDP) players" % n, "rtmp%s_p" % n))
        elif c.startswith("rtsp"):
            cases.append((c, "%s RTSP (TCP) players" % n, "rtmp%s_p" % n))
        elif c.startswith("srt"):
            cases.append((c, "%s SRT players" % n, "rtmp%s_p" % n))
        else:
            cases.append((c, "%s RTMP players" % n, None))
    p("### Fan-out efficiency (median of %s runs per row)" % ("/".join(sorted({str(v) for v in reps.values()})) or "0"))
    p("")
    p("Server CPU and RSS over the steady window; delivered = media payload bytes the players received in that window. "
      "Ratio rows: streamgate / nginx-rtmp (lower is better for every column but Gbit/s), except where the row says otherwise.")
    p("")
    p("| case | server | playing | delivered Gbit/s | server CPU (% of a core; kernel share) | CPU per Gbit/s (cores) | RSS idle → loaded (MiB) | RSS per player (KiB) | play start p50 / p99 (ms) | first keyframe p50 / p99 (ms) | largest frame gap in window (ms) | load tool CPU | ffmpeg CPU | machine busy |")
    p("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")

    def row(case, label, server, m):
        p("| %s | %s | %s/%s | %s | %s (%s%%) | %s | %s → %s | %s | %s / %s | %s / %s | %s | %s | %s | %s |" % (
            label, server,
            fmt(m["playing"], 0), fmt(m.get("n"), 0),
            fmt(m["gbps"], 3), fmt(m["cores"] and 100 * m["cores"], 1), fmt(m["sys_share"] and 100 * m["sys_share"], 0), fmt(m["cpu_per_gbps"], 3),
            fmt(m["idle_mib"], 1), fmt(m["rss_mib"], 1), fmt(m["kib_per_player"], 1),
            fmt(m["ps50"]), fmt(m["ps99"]), fmt(m["kf50"]), fmt(m["kf99"]), fmt(m["gapmax"], 1),
            fmt(m["tool"] and 100 * m["tool"], 1) + "%", fmt(m["ffmpeg"] and 100 * m["ffmpeg"], 1) + "%",
            fmt(m["busy"] and 100 * m["busy"], 0) + "%" + (" (a run > 90%)" if m.get("contended_any") else "")))

    def ratio_row(label, a, b, what):
        p("| %s | %s | | %s | %s | **%s** | | **%s** | %s / %s | %s / %s | | | | |" % (
            label, what,
            fx(ratio(a["gbps"], b["gbps"])), fx(ratio(a["cores"], b["cores"])), fx(ratio(a["cpu_per_gbps"], b["cpu_per_gbps"])),
            fx(ratio(a["kib_per_player"], b["kib_per_player"])),
            fx(ratio(a["ps50"], b["ps50"])), fx(ratio(a["ps99"], b["ps99"])),
            fx(ratio(a["kf50"], b["kf50"])), fx(ratio(a["kf99"], b["kf99"]))))

    for case, label, base in cases:
        for server in SERVERS:
            m = E.get((case, server))
            if m:
                n = eff[(case, server)][0].get("players")
                m = dict(m, n=n, contended_any=any(eff_metrics(r)["contended"] for r in eff[(case, server)]))
                row(case, label, server, m)
        sg = E.get((case, "streamgate"))
        for peer in PEERS:
            if sg and E.get((case, peer)):
                ratio_row(label, sg, E[(case, peer)], "ratio streamgate / %s" % peer)
        if case.startswith("flv") and sg and E.get((base, "streamgate")):
            ratio_row(label, sg, E[(base, "streamgate")], "ratio HTTP-FLV / streamgate's RTMP")
        if (case.startswith("rtsp") or case.startswith("srt")) and base and sg and E.get((base, "streamgate")):
            what = "RTSP (UDP)" if case.startswith("rtspudp") else "RTSP (TCP)" if case.startswith("rtsp") else "SRT"
            ratio_row(label, sg, E[(base, "streamgate")], "ratio %s / streamgate's RTMP (same run)" % what)
        if case.endswith("_w2") and sg:
            if E.get((base, "streamgate")):
                ratio_row(label, sg, E[(base, "streamgate")], "ratio workers 2 / workers 1")
            if E.get((base, "nginx-rtmp")):
                ratio_row(label, sg, E[(base, "nginx-rtmp")], "ratio workers 2 / nginx-rtmp (1 worker)")
    p("")

    # Where the CPU goes: user space (the server's own code) and kernel (system calls, TCP).
    p("CPU per delivered Gbit/s split into user space and kernel time (utime / stime of the window), cores per Gbit/s:")
    p("")
    p("| case | server | user | kernel | total |")
    p("|---|---|---|---|---|")
    for case, label, base in cases:
        for server in SERVERS:
            m = E.get((case, server))
            if m:
                p("| %s | %s | %s | %s | %s |" % (label, server, fmt(m["user_per_gbps"], 3), fmt(m["sys_per_gbps"], 3), fmt(m["cpu_per_gbps"], 3)))
    p("")

    # Per-run spread of the headline figure, so the reader sees the noise.
    p("CPU per Gbit/s of each run (cores per Gbit/s), in run order:")
    p("")
    for (case, server), rs in sorted(eff.items()):
        p("- %s, %s: %s" % (case, server, ", ".join(
            "%s (machine %s%%)" % (fmt(eff_metrics(r)["cpu_per_gbps"], 3), fmt(100 * (eff_metrics(r)["busy"] or 0), 0)) for r in rs)))
    p("")

    # Join latency, hooks off / on.
    joins = {}
    for r in rows:
        if r["kind"] == "join":
            joins.setdefault((r["server"], r["hooks"], r["join"]), []).append(r)

    def jm(r):
        L = r.get("load") or {}
        h = r.get("hook") or {}
        return {
            "playing": L.get("playing"),
            "errors": L.get("errors"),
            "ps50": dist(L.get("play_start_ms"), "p50"),
            "ps99": dist(L.get("play_start_ms"), "p99"),
            "psmax": dist(L.get("play_start_ms"), "max"),
            "kf50": dist(L.get("first_keyframe_ms"), "p50"),
            "kf99": dist(L.get("first_keyframe_ms"), "p99"),
            "tool": L.get("tool_cpu_percent"),
            "tcp50": dist(L.get("tcp_connect_ms"), "p50"),
            "tcp99": dist(L.get("tcp_connect_ms"), "p99"),
            "syn": L.get("tcp_connect_over_1s"),
            "hreq": h.get("requests"),
            "hcpu": h.get("cpu_s"),
            "hlag": h.get("loop_lag_max_ms"),
            "hopen": h.get("max_open"),
            "hconn": h.get("connections"),
        }

    J = {k: medians(v, jm) for k, v in joins.items()}
    if J:
        n = next(iter(joins.values()))[0].get("players")
        p("### Play start with and without hooks (%s players, median of the runs)" % n)
        p("")
        kinds = {(r.get("hook") or {}).get("server", "python") for rs in joins.values() for r in rs if r.get("hook")}
        python_hooks = kinds == {"python"}
        if python_hooks:
            p("Hooks on: `on_connect`, `on_play`, `on_publish`, `on_done` to the keep-alive hook server (`tests/bench/hook_server.py`) that answers 200 at once. "
              "Overhead = hooks on minus hooks off of the same server and join. Hook server: requests answered, its CPU seconds, the most connections it had open and its event loop's largest lag in the run (how long it kept a request waiting because it was busy).")
            hook_head = "hook server: requests, CPU s, most connections, lag max (ms)"
        else:
            p("Hooks on: `on_connect`, `on_play`, `on_publish`, `on_done` to a keep-alive nginx answering `return 200` (one worker). "
              "Overhead = hooks on minus hooks off of the same server and join. Hook server: requests answered, its CPU seconds and the connections it accepted in the run.")
            hook_head = "hook server: requests, CPU s, connections accepted"
        p("")
        p("| join | server | hooks | playing | errors | TCP connect p50 / p99 (ms); players ≥ 1 s | play start p50 / p99 / max (ms) | first keyframe p50 / p99 (ms) | hook overhead p50 / p99 (ms) | %s | load tool CPU |" % hook_head)
        p("|---|---|---|---|---|---|---|---|---|---|---|")
        for join in ("500/s", "once"):
            for server in ("nginx-rtmp", "streamgate"):
                for hooks in ("off", "on"):
                    m = J.get((server, hooks, join))
                    if not m:
                        continue
                    off = J.get((server, "off", join))
                    over = "-"
                    if hooks == "on" and off:
                        over = "%s / %s" % (fmt(m["ps50"] - off["ps50"] if m["ps50"] is not None and off["ps50"] is not None else None),
                                            fmt(m["ps99"] - off["ps99"] if m["ps99"] is not None and off["ps99"] is not None else None))
                    if hooks == "off":
                        hook = "-"
                    elif python_hooks:
                        hook = "%s, %s, %s, %s" % (fmt(m["hreq"], 0), fmt(m["hcpu"]), fmt(m["hopen"], 0), fmt(m["hlag"], 1))
                    else:
                        hook = "%s, %s, %s" % (fmt(m["hreq"], 0), fmt(m["hcpu"]), fmt(m["hconn"], 0))
                    p("| %s | %s | %s | %s | %s | %s / %s; %s | %s / %s / %s | %s / %s | %s | %s | %s%% |" % (
                        "500/s" if join == "500/s" else "all at once", server, hooks,
                        fmt(m["playing"], 0), fmt(m["errors"], 0),
                        fmt(m["tcp50"], 1), fmt(m["tcp99"], 1), fmt(m["syn"], 0),
                        fmt(m["ps50"]), fmt(m["ps99"]), fmt(m["psmax"]),
                        fmt(m["kf50"]), fmt(m["kf99"]), over, hook, fmt(m["tool"], 1)))
            sg_on, ng_on = J.get(("streamgate", "on", join)), J.get(("nginx-rtmp", "on", join))
            sg_off, ng_off = J.get(("streamgate", "off", join)), J.get(("nginx-rtmp", "off", join))
            for hooks, a, b in (("off", sg_off, ng_off), ("on", sg_on, ng_on)):
                if a and b:
                    p("| %s | ratio streamgate / nginx-rtmp | %s | | | | %s / %s / %s | %s / %s | | | |" % (
                        "500/s" if join == "500/s" else "all at once", hooks,
                        fx(ratio(a["ps50"], b["ps50"])), fx(ratio(a["ps99"], b["ps99"])), fx(ratio(a["psmax"], b["psmax"])),
                        fx(ratio(a["kf50"], b["kf50"])), fx(ratio(a["kf99"], b["kf99"]))))
        p("")
        notes = []
        for (server, hooks, join), rs in sorted(joins.items()):
            if hooks != "on" or not python_hooks:
                continue
            lags = [(r.get("hook") or {}).get("loop_lag_max_ms") or 0 for r in rs]
            m = J[(server, hooks, join)]
            off = J.get((server, "off", join))
            extra = (m["ps99"] or 0) - ((off or {}).get("ps99") or 0)
            if max(lags) >= 10 and max(lags) >= 0.25 * max(extra, 0):
                notes.append("%s, hooks on, %s: the hook server's event loop lagged up to %.0f ms (median over runs %.0f ms) against %.0f ms of extra p99: "
                             "the hook server, not only %s, is a bottleneck in this row." % (server, "all at once" if join == "once" else join, max(lags), med(lags), extra, server))
        if notes:
            p("Hook server as a bottleneck:")
            p("")
            for n in notes:
                p("- " + n)
        elif python_hooks:
            p("The hook server's event loop never lagged 10 ms (or a quarter of the hooks' extra p99) in any run: it was not the bottleneck.")
        p("")

    # Slow hook.
    slows = {}
    for r in rows:
        if r["kind"] == "slow":
            slows.setdefault(r["server"], []).append(r)

    def sm(r):
        L = r.get("load") or {}
        L2 = r.get("load2") or {}
        w = L.get("window") or {}
        return {
            "playing": L.get("playing"),
            "errors": L.get("errors"),
            "gap50": dist(w.get("max_frame_gap_ms"), "p50"),
            "gap99": dist(w.get("max_frame_gap_ms"), "p99"),
            "gapmax": dist(w.get("max_frame_gap_ms"), "max"),
            "allgap": dist(L.get("max_frame_gap_ms"), "max"),
            "new_playing": L2.get("playing"),
            "new_errors": L2.get("errors"),
            "new_ps50": dist(L2.get("play_start_ms"), "p50"),
            "new_ps99": dist(L2.get("play_start_ms"), "p99"),
            "new_psmax": dist(L2.get("play_start_ms"), "max"),
            "new_kf50": dist(L2.get("first_keyframe_ms"), "p50"),
        }

    if slows:
        r0 = next(iter(slows.values()))[0]
        p("### A slow hook for new players (%s existing players keep playing while %s new ones wait %s s for `on_play`; median of the runs)"
          % (r0.get("players"), r0.get("new_players"), r0.get("slow_s")))
        p("")
        p("Largest frame gap: per existing player, the longest time between two video frames that arrived in the window in which the new players wait and then start (target: under 100 ms).")
        p("")
        p("| server | existing playing | errors | largest frame gap p50 / p99 / max over players (ms) | largest gap of the whole run (ms) | new players playing | new errors | new play start p50 / p99 / max (ms) | new first keyframe p50 (ms) |")
        p("|---|---|---|---|---|---|---|---|---|")
        for server in ("nginx-rtmp", "streamgate"):
            if server not in slows:
                continue
            m = medians(slows[server], sm)
            p("| %s | %s | %s | %s / %s / %s | %s | %s | %s | %s / %s / %s | %s |" % (
                server, fmt(m["playing"], 0), fmt(m["errors"], 0), fmt(m["gap50"], 1), fmt(m["gap99"], 1), fmt(m["gapmax"], 1),
                fmt(m["allgap"], 1), fmt(m["new_playing"], 0), fmt(m["new_errors"], 0),
                fmt(m["new_ps50"], 0), fmt(m["new_ps99"], 0), fmt(m["new_psmax"], 0), fmt(m["new_kf50"], 0)))
        p("")

    print("\n".join(out))


if __name__ == "__main__":
    {"record": record, "summary": summary}[sys.argv[1]](sys.argv[2:])
