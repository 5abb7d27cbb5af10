"""``make bench``: every benchmark in one run, each figure beside its floor, and a verdict per
target. Writes ``<out>/<name>.json`` per benchmark, ``summary.json`` and two plots.

    .venv/bin/python bench/run.py              # full run, results in bench/results/ (~9 min here)
    .venv/bin/python bench/run.py --smoke      # every benchmark at small size (< 1 min)

The process under test is pinned to core 0, the load generator and the echo upstream to
core 1 (see common.py). Timings are medians and percentiles of one run, compared only with
figures taken in the same run; ``--smoke`` checks the harness and that no frame is lost,
never how fast anything is.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))

import capacity  # noqa: E402
import common  # noqa: E402
import connect  # noqa: E402
import memory  # noqa: E402
import micro  # noqa: E402
import mint  # noqa: E402
import overload  # noqa: E402
import turn  # noqa: E402

RATES = (16000, 24000)
PATHS = ("direct", "floor", "bridge")
#: p99 added latency a session may see and still count towards capacity (issue 7).
CAPACITY_P99_MS = 5.0
#: Sessions at which CPU per session and a turn's latency are judged (issue 23).
TARGET_N = 50
#: CPU per session, bridge / floor, at ``TARGET_N`` (issue 23 target 1): resampling costs
#: the 16 kHz path a little more than translating alone.
CPU_RATIO_GOAL = {24000: 1.05, 16000: 1.2}
#: Repetitions of the CPU-per-session comparison at ``TARGET_N`` (floor and bridge in turn,
#: the order alternating), each as long as a capacity row: the verdict is the median of
#: their ratios. One pair of rows on this shared machine read 1.03x one run and 1.31x the
#: next for the same code (and a floor 16 kHz row 26% against 38% at 24 kHz the same hour).
CPU_RATIO_REPS = 5
#: What a turn may add, bridge - direct, commit -> first audio (issue 23 target 2), ms.
TURN_P50_GOAL_MS = 2.0
TURN_P99_GOAL_MS = 5.0
#: Reply length of the answering provider in the turn benchmark.
TURN_REPLY_MS = 200


def fmt(v, digits=2) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def table(title: str, header: list[str], rows: list[list]) -> str:
    cells = [header] + [[fmt(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = [title, "  ".join(h.ljust(w) for h, w in zip(header, widths)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))
              for r in cells[1:]]
    return "\n".join(lines)


async def run_capacity(levels, seconds, echo, floor, bridge, out: Path) -> list[dict]:
    rows = []
    for n in levels:
        for rate in RATES:
            for target in PATHS:
                url, pid = {"direct": (echo.ws_base + "/v1/realtime", None),
                            "floor": (floor.ws_base + "/relay", floor.pid),
                            "bridge": (None, bridge.pid)}[target]
                r = await capacity.run(target, url, n, seconds, rate, server_pid=pid,
                                       bridge_base=bridge.base)
                rows.append(r)
                print(f"  capacity {target:6} {rate} Hz N={n:<4} p50 {fmt(r['p50_ms'])} ms  "
                      f"p99 {fmt(r['p99_ms'])} ms  cpu {fmt(r['cpu_pct'], 0)}%  lost {r['lost']}  "
                      f"reordered {r['reordered']}", flush=True)
    common.write_result(out, "capacity", rows)
    return rows


async def run_cpu_ratio(n: int, reps: int, seconds: float, floor, bridge, out: Path) -> list[dict]:
    """CPU per session, bridge / floor, at ``n`` sessions: ``reps`` repetitions per rate, each
    a floor row and a bridge row back to back, the order alternating so that a drift of the
    machine favours neither (issue 23 target 1)."""
    rows = []
    for rep in range(reps):
        for rate in RATES:
            pair = [("floor", floor.ws_base + "/relay", floor.pid), ("bridge", None, bridge.pid)]
            cpu, lost = {}, 0
            for target, url, pid in (pair if rep % 2 == 0 else pair[::-1]):
                r = await capacity.run(target, url, n, seconds, rate, server_pid=pid,
                                       bridge_base=bridge.base)
                cpu[target] = r["cpu_pct"]
                lost += r["lost"] + r["reordered"] + r["session_error_count"]
            ratio = cpu["bridge"] / cpu["floor"] if cpu["floor"] else None
            rows.append({"rep": rep, "rate": rate, "sessions": n, "floor_cpu_pct": cpu["floor"],
                         "bridge_cpu_pct": cpu["bridge"], "ratio": ratio, "lost": lost})
            print(f"  cpu ratio rep {rep} {rate} Hz N={n}: floor {fmt(cpu['floor'], 1)}% "
                  f"bridge {fmt(cpu['bridge'], 1)}% = {fmt(ratio)}", flush=True)
    common.write_result(out, "cpu_ratio", rows)
    return rows


def derive_capacity(rows: list[dict]) -> dict:
    by = {(r["target"], r["rate"], r["sessions"]): r for r in rows}
    levels = sorted({r["sessions"] for r in rows})
    added = {}
    for (target, rate, n), r in by.items():
        d = by.get(("direct", rate, n))
        if target != "direct" and d and r["p50_ms"] is not None and d["p50_ms"] is not None:
            added[(target, rate, n)] = (r["p50_ms"] - d["p50_ms"], r["p99_ms"] - d["p99_ms"])
    per_core = {}
    for target in ("floor", "bridge"):
        for rate in RATES:
            best, est, by_load = 0, None, 0
            base = added.get((target, rate, levels[0]), (0, 0))[1]
            for n in levels:
                r, a = by[(target, rate, n)], added.get((target, rate, n))
                healthy = ((r["cpu_pct"] or 0) < 100 and r["lost"] == 0 and r["reordered"] == 0
                           and a is not None)
                if healthy and a[1] < CAPACITY_P99_MS:
                    best, est = n, n / max(r["cpu_pct"] / 100, 1e-6)
                if healthy and a[1] - base < CAPACITY_P99_MS:
                    by_load = n
            per_core[(target, rate)] = (best, est, by_load)
    return {"by": by, "levels": levels, "added": added, "per_core": per_core}


def plots(cap: dict, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by, levels = cap["by"], cap["levels"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, rate in zip(axes, RATES):
        for target, colour in zip(PATHS, ("tab:gray", "tab:blue", "tab:orange")):
            ax.plot(levels, [by[(target, rate, n)]["p50_ms"] for n in levels], "--", color=colour,
                    label=f"{target} p50")
            ax.plot(levels, [by[(target, rate, n)]["p99_ms"] for n in levels], "-o", color=colour,
                    label=f"{target} p99")
        ax.set_title(f"round trip, {rate // 1000} kHz clients")
        ax.set_xlabel("concurrent sessions")
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("ms (worst sample of each 20 ms frame)")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "latency.png", dpi=90)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    for target, colour in (("floor", "tab:blue"), ("bridge", "tab:orange")):
        for rate, style in zip(RATES, ("-o", "--s")):
            ax.plot(levels, [by[(target, rate, n)]["cpu_pct"] for n in levels], style, color=colour,
                    label=f"{target} {rate // 1000} kHz")
    ax.axhline(100, color="red", lw=0.8)
    ax.set_xlabel("concurrent sessions")
    ax.set_ylabel("% of one core (process under test)")
    ax.legend(fontsize=8)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "cpu.png", dpi=90)
    plt.close(fig)
    return ["latency.png", "cpu.png"]


async def run_turns(n: int, turns: int, srcs: dict[str, Path] | None = None) -> list[dict]:
    """Commit -> first audio, direct and through a bridge, against a provider that answers at
    once (bench/turn.py); a bridge of its own, so the capacity runs leave it nothing.
    ``srcs``: label -> checkout, one bridge each (default: this one, labelled "bridge");
    each row carries its ``label`` ("direct" or the bridge's)."""
    srcs = srcs or {"bridge": common.ROOT}
    answer = await common.spawn("answering upstream", ["bench/echo_upstream.py", "--port", "{port}",
                                                       "--reply-ms", str(TURN_REPLY_MS)],
                                core=common.LOAD_CORE, ready_path="/stats")
    upstream = answer.ws_base + "/v1/realtime"
    rows: list[dict] = []
    bridges: dict[str, common.Server] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            try:
                for label, src in srcs.items():
                    (Path(tmp) / label).mkdir()
                    bridges[label] = await common.start_bridge(str(Path(tmp) / label), upstream, src=src,
                                                               name=label)
                for rate in RATES:
                    for label in ("direct", *srcs):
                        srv = bridges.get(label)
                        r = await turn.run("direct" if srv is None else "bridge",
                                           upstream if srv is None else None, n, turns, rate,
                                           bridge_base=srv.base if srv else None)
                        r["label"] = label
                        rows.append(r)
                        print(f"  turn {label:6} {rate} Hz N={n:<4} p50 {fmt(r['p50_ms'])} ms  "
                              f"p99 {fmt(r['p99_ms'])} ms  turns {r['turns']}  "
                              f"errors {r['session_error_count']}", flush=True)
            finally:
                for srv in bridges.values():
                    await srv.stop()
    finally:
        await answer.stop()
    return rows


def turn_table(rows: list[dict]) -> list[list]:
    direct = {r["rate"]: r for r in rows if r["target"] == "direct"}
    out = []
    for r in rows:
        d = direct.get(r["rate"])
        a50 = a99 = None
        if r["target"] == "bridge" and d and r["p50_ms"] is not None and d["p50_ms"] is not None:
            a50, a99 = r["p50_ms"] - d["p50_ms"], r["p99_ms"] - d["p99_ms"]
        out.append([f"{r['target']} {r['rate'] // 1000}k", r["sessions"], r["p50_ms"], r["p99_ms"], a50, a99,
                    r["turns"], r["session_error_count"]])
    return out


def verdicts(cap: dict, ratios: list[dict], mints: list[dict], conns: list[dict], mems: list[dict],
             turns: list[dict], target_n: int) -> list[list]:
    pc = cap["per_core"]
    rows = []

    def add(name, figure, goal, ok):
        rows.append([name, figure, goal, "PASS" if ok else "FAIL"])

    b, f = pc[("bridge", 16000)], pc[("floor", 16000)]
    ratio = b[0] / f[0] if f[0] else 0.0
    add("sessions/core, 16 kHz (bridge/floor)", f"{b[0]} / {f[0]} = {ratio:.2f}", ">= 0.80",
        f[0] > 0 and ratio >= 0.8)
    for rate in sorted(RATES, reverse=True):
        rs = [x["ratio"] for x in ratios if x["rate"] == rate and x["ratio"] is not None]
        if rs:
            r, goal = statistics.median(rs), CPU_RATIO_GOAL[rate]
            add(f"cpu per session @N={target_n}, {rate // 1000} kHz (bridge/floor)",
                f"median {r:.2f} [{min(rs):.2f}-{max(rs):.2f}] of {len(rs)}", f"<= {goal:.2f}", r <= goal)
    t = {(x["target"], x["rate"]): x for x in turns}
    for rate in RATES:
        b, d = t.get(("bridge", rate)), t.get(("direct", rate))
        if b and d and b["p50_ms"] is not None and d["p50_ms"] is not None:
            a50, a99 = b["p50_ms"] - d["p50_ms"], b["p99_ms"] - d["p99_ms"]
            add(f"commit -> first audio @N={target_n}, {rate // 1000} kHz (bridge - direct)",
                f"p50 +{a50:.2f} / p99 +{a99:.2f} ms",
                f"<= {TURN_P50_GOAL_MS:g} / {TURN_P99_GOAL_MS:g} ms",
                a50 <= TURN_P50_GOAL_MS and a99 <= TURN_P99_GOAL_MS and not b["session_error_count"])
    m = {(x["target"], x["concurrency"]): x for x in mints}
    mb, mf = m.get(("bridge", 16)), m.get(("bare", 16))
    if mb and mf:
        r = mb["rps"] / mf["rps"]
        add("mint rps @16 (bridge/bare)", f"{mb['rps']:.0f} / {mf['rps']:.0f} = {r:.2f}", ">= 0.50", r >= 0.5)
    mem = next(x for x in mems if x["target"] == "bridge")
    worst = max(mem["idle_kib_per_session"], mem["turn_kib_per_session"])
    add(f"memory per session (N={mem['sessions']})",
        f"idle {mem['idle_kib_per_session']:.0f} / turn {mem['turn_kib_per_session']:.0f} KiB",
        "<= 150 KiB", worst <= 150)
    c = {x["target"]: x for x in conns}
    d = c["bridge"]["p50_ms"] - c["floor"]["p50_ms"]
    add("connect p50 (bridge - floor)", f"{c['bridge']['p50_ms']:.2f} - {c['floor']['p50_ms']:.2f} = {d:.2f} ms",
        "<= 2 ms", d <= 2)
    lost = sum(r["lost"] + r["reordered"] + r["session_error_count"] for r in cap["by"].values())
    add("lost or reordered frames, every N", str(lost), "0", lost == 0)
    return rows


async def main(args) -> int:
    smoke = args.smoke
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    levels = [10] if smoke else [10, TARGET_N, 100, 200]
    seconds = 1.0 if smoke else 8.0
    mem_n = 50 if smoke else 1000
    connect_k = 20 if smoke else 200
    mint_seconds = 1.0 if smoke else 5.0
    turn_n, turns_each = (10, 3) if smoke else (TARGET_N, 12)
    common.pin_self()
    started = time.monotonic()
    print(f"speko_bridge bench ({'smoke' if smoke else 'full'}): {common.CORES} cores, "
          f"{'server on core 0, load on core 1' if common.PINNED else 'NOT pinned (one core)'}", flush=True)

    echo = await common.start_echo_upstream()
    upstream = echo.ws_base + "/v1/realtime"
    servers = [echo]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            floor = await common.start_floor(upstream)
            bridge = await common.start_bridge(tmp, upstream)
            servers += [floor, bridge]
            cap_rows = await run_capacity(levels, seconds, echo, floor, bridge, out)
            ratio_rows = await run_cpu_ratio(levels[0] if smoke else TARGET_N, 1 if smoke else CPU_RATIO_REPS,
                                             seconds, floor, bridge, out)
            conns = [await connect.run("floor", floor.ws_base + "/relay", connect_k, echo_base=echo.base),
                     await connect.run("bridge", None, connect_k, echo_base=echo.base, bridge_base=bridge.base)]
            common.write_result(out, "connect", conns)
            for s in (floor, bridge):
                await s.stop()
                servers.remove(s)
        print("  connect done", flush=True)
        turn_rows = await run_turns(turn_n, turns_each)
        common.write_result(out, "turn", turn_rows)

        mems = []
        with tempfile.TemporaryDirectory() as tmp:  # fresh processes: RSS of this test only
            bridge = await common.start_bridge(tmp, upstream)
            servers.append(bridge)
            mems.append(await memory.run("bridge", None, mem_n, server_pid=bridge.pid, echo_base=echo.base,
                                         bridge_base=bridge.base))
            await bridge.stop()
            servers.remove(bridge)
        floor = await common.start_floor(upstream)
        servers.append(floor)
        mems.append(await memory.run("floor", floor.ws_base + "/relay", mem_n, server_pid=floor.pid,
                                     echo_base=echo.base))
        await floor.stop()
        servers.remove(floor)
        common.write_result(out, "memory", mems)
        print("  memory done", flush=True)

        mints = []
        with tempfile.TemporaryDirectory() as tmp:
            bridge = await common.start_bridge(tmp, upstream)
            servers.append(bridge)
            async with aiohttp.ClientSession() as http:
                size = len(json.dumps((await common.mint_tokens(http, bridge.base, 1, 16000))[0]))
            bare = await common.spawn("bare endpoint", ["bench/bare_app.py", "--port", "{port}",
                                                        "--size", str(size)])
            servers.append(bare)
            for conc in (1, 16, 64):
                for name, srv in (("bare", bare), ("bridge", bridge)):
                    mints.append(await mint.run(name, srv.base, conc, mint_seconds))
        common.write_result(out, "mint", mints)
        print("  mint done", flush=True)

        # issue 23 target 4: offered twice the capacity measured above (24 kHz, "by load"),
        # the bridge with its default overload rule keeps the admitted sessions' p99
        over_c = derive_capacity(cap_rows)["per_core"][("bridge", 24000)][2] or levels[0]
        over = await overload.offer(over_c, 4.0 if smoke else 16.0, echo, {})
        over.pop("rss_samples")
        common.write_result(out, "overload", over)
        print("  overload done", flush=True)
    finally:
        for s in servers:
            await s.stop()

    micro.configure(smoke)
    micro_rows = micro.rows()
    common.write_result(out, "micro", [{"name": n, "us": us} for n, us in micro_rows])
    resampler_rows = micro.resampler_quality()  # issue 23 target 3, old recipe beside new
    common.write_result(out, "resampler", resampler_rows)

    cap = derive_capacity(cap_rows)
    ver = (verdicts(cap, ratio_rows, mints, conns, mems, turn_rows, turn_n if smoke else TARGET_N)
           + micro.resampler_verdicts(resampler_rows))
    ver += [[name, figure, goal, "PASS" if ok else "FAIL"]
            for name, figure, goal, ok in overload.verdicts(over)]
    pngs = plots(cap, out)

    report = []
    report.append(table("Targets (one run; ratios of figures taken side by side)",
                        ["target", "figure", "goal", "verdict"], ver))
    cap_table = []
    for n in cap["levels"]:
        for rate in RATES:
            for target in PATHS:
                r = cap["by"][(target, rate, n)]
                a = cap["added"].get((target, rate, n), (None, None))
                cap_table.append([f"{target} {rate // 1000}k", n, r["p50_ms"], r["p99_ms"], a[0], a[1],
                                  r["cpu_pct"], r["lost"], r["reordered"]])
    report.append(table(f"Capacity: paced 20 ms frames, {seconds:.0f} s per row after 1 s warm-up; "
                        "latency = worst sample per frame",
                        ["path", "N", "p50 ms", "p99 ms", "+p50 ms", "+p99 ms", "cpu %", "lost", "reord"],
                        cap_table))
    report.append(table(f"Sessions per core: largest N with p99 added < {CAPACITY_P99_MS:.0f} ms at cpu < 100% "
                        f"(by load: p99 added < {CAPACITY_P99_MS:.0f} ms above its N={cap['levels'][0]} value)",
                        ["path", "sessions/core", "N / cpu there", "by load"],
                        [[f"{t} {r // 1000}k", v[0], v[1], v[2]] for (t, r), v in cap["per_core"].items()]))
    report.append(table(f"Turn: commit -> first audio of the answer, {turns_each - turn.WARMUP_TURNS} timed turns "
                        f"per session (provider answers at once, {TURN_REPLY_MS} ms replies)",
                        ["path", "N", "p50 ms", "p99 ms", "+p50 ms", "+p99 ms", "turns", "errors"],
                        turn_table(turn_rows)))
    report.append(table("Mint: POST /v1/sessions back to back",
                        ["server", "concurrent", "req/s", "p50 ms", "p99 ms", "errors"],
                        [[m["target"], m["concurrency"], m["rps"], m["p50_ms"], m["p99_ms"], m["errors"]]
                         for m in mints]))
    report.append(table("Connect: handshake start -> first upstream message",
                        ["path", "sockets", "p50 ms", "p99 ms"],
                        [[c["target"], c["sockets"], c["p50_ms"], c["p99_ms"]] for c in conns]))
    report.append(table("Memory: RSS growth per connected session",
                        ["process", "sessions", "RSS at 0 MiB", "idle KiB/session", "after a turn KiB/session"],
                        [[m["target"], m["sessions"], m["rss0_mib"], m["idle_kib_per_session"],
                          m["turn_kib_per_session"]] for m in mems]))
    report.append(table("Micro: median microseconds per call", ["benchmark", "us"],
                        [[n, us] for n, us in micro_rows]))
    report.append(table("Resampler (bench/micro.py): held back, tone delay, passband, images (up) / "
                        "aliases (down), CPU per 20 ms chunk",
                        ["recipe", "direction", "held mean ms", "held max ms", "delay ms", "to 7 kHz dB",
                         "image/alias dB", "cpu us alone", "cpu us among 100"],
                        [[r["recipe"], r["direction"], r["held_back_mean_ms"], r["held_back_max_ms"],
                          r["tone_delay_ms"], r["passband_db"], r["image_or_alias_db"], r["cpu_us"],
                          r["cpu_us_among_100"]] for r in resampler_rows]))
    text = "\n\n".join(report)
    print("\n" + text)
    (out / "summary.txt").write_text(text + "\n")
    common.write_result(out, "summary", {"verdicts": ver, "plots": pngs, "smoke": smoke,
                                         "seconds": round(time.monotonic() - started, 1)})
    print(f"\nresults and plots in {out}/ ({time.monotonic() - started:.0f} s)")
    lost = sum(r["lost"] + r["reordered"] + r["session_error_count"] for r in cap_rows)
    lost += sum(r["lost"] for r in ratio_rows)
    lost += sum(r["session_error_count"] for r in turn_rows)
    lost += over["lost_admitted"] + over["reordered"] + over["error_count"]
    if lost:
        print(f"FAILED: {lost} frames lost, reordered or sessions failed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true", help="every benchmark at small size (< 1 min)")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    sys.exit(asyncio.run(main(ap.parse_args())))
