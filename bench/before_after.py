"""Issue 23's targets for two versions of the bridge in one run: an earlier commit ("before")
and this checkout ("after"), side by side on the same machine in the same hour, so that
what changed is not read off two runs of a noisy machine.

    python bench/before_after.py --before 7786eed          # the commit before issue 23
    python bench/before_after.py --before 7786eed --reps 3 --turns 8 --out /tmp/ba

The "before" commit is exported with ``git archive`` into a temporary directory and served
from there with this checkout's environment (the same Python and libraries); both bridges
run pinned to the server core with the same settings (``bench/common.bridge_env``).

1. **CPU per session** at ``--sessions`` (bench/capacity.py's paced 20 ms streams, both
   rates): each repetition runs the floor relay, the before bridge and the after bridge
   back to back, the order rotating from one repetition to the next; per row the ratio to
   the floor of the same repetition, then the median [range] over repetitions (target 1).
2. **What a turn adds** (bench/turn.py, a provider answering at once): direct, before and
   after, ``commit`` -> first audio, p50 and p99 (target 2).
3. **Overload** (bench/overload.py's offer): ``--capacity`` sessions streaming at 24 kHz,
   as many again offered over 4 s; each bridge with its own default settings (the before
   commit may have no overload rule and admit everyone): the first sessions' p99 before
   and during the offer, how many of the excess were refused and how many admitted,
   frames lost (target 4).

The resampler's figures (target 3) already compare the recipe before issue 23 with the
current one in ``bench/micro.py``; the soak (target 5) runs ten minutes and has its own
command (``make soak``); the stack's settings (target 6) are ``bench/stack.py``'s.
Results: ``before_after.json`` and ``before_after.txt`` in ``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import capacity  # noqa: E402
import common  # noqa: E402
import overload  # noqa: E402
import turn  # noqa: E402

RATES = (16000, 24000)
#: Reply length of the answering provider in the turn rows (as bench/run.py's).
TURN_REPLY_MS = 200


def export(rev: str, into: Path) -> str:
    """``rev`` of this repository's history, as files in ``into``; its full commit id."""
    full = subprocess.run(["git", "rev-parse", "--verify", rev + "^{commit}"], cwd=common.ROOT,
                          check=True, capture_output=True, text=True).stdout.strip()
    archive = subprocess.run(["git", "archive", full], cwd=common.ROOT, check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return full


def median_range(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} [{min(values):.2f}-{max(values):.2f}]"


async def cpu_rows(n: int, reps: int, seconds: float, floor: common.Server,
                   bridges: dict[str, common.Server]) -> list[dict]:
    rows = []
    order = [("floor", floor), *bridges.items()]
    for rep in range(reps):
        turn_order = order[rep % len(order):] + order[:rep % len(order)]
        for rate in RATES:
            cpu, lost = {}, 0
            for label, srv in turn_order:
                is_floor = label == "floor"
                r = await capacity.run("floor" if is_floor else "bridge",
                                       srv.ws_base + "/relay" if is_floor else None, n, seconds, rate,
                                       server_pid=srv.pid, bridge_base=None if is_floor else srv.base)
                cpu[label] = r["cpu_pct"]
                lost += r["lost"] + r["reordered"] + r["session_error_count"]
            row = {"rep": rep, "rate": rate, "sessions": n, "cpu_pct": cpu, "lost": lost,
                   "ratio": {k: cpu[k] / cpu["floor"] for k in bridges if cpu["floor"]}}
            rows.append(row)
            print(f"  cpu rep {rep} {rate} Hz N={n}: " + "  ".join(
                f"{k} {v:.1f}%" for k, v in cpu.items()) + "  ratios " + "  ".join(
                f"{k} {v:.2f}" for k, v in row["ratio"].items()), flush=True)
    return rows


async def turn_rows(n: int, turns: int, srcs: dict[str, Path], tmp: Path) -> list[dict]:
    answer = await common.spawn("answering upstream", ["bench/echo_upstream.py", "--port", "{port}",
                                                       "--reply-ms", str(TURN_REPLY_MS)],
                                core=common.LOAD_CORE, ready_path="/stats")
    upstream = answer.ws_base + "/v1/realtime"
    rows, bridges = [], {}
    try:
        for label, src in srcs.items():
            (tmp / f"turn-{label}").mkdir()
            bridges[label] = await common.start_bridge(str(tmp / f"turn-{label}"), upstream, src=src,
                                                       name=f"bridge {label}")
        for rate in RATES:
            for label in ("direct", *srcs):
                srv = bridges.get(label)
                r = await turn.run("direct" if srv is None else "bridge", upstream if srv is None else None,
                                   n, turns, rate, bridge_base=srv.base if srv else None)
                r["label"] = label
                rows.append(r)
                print(f"  turn {label:6} {rate} Hz N={n}: p50 {r['p50_ms']:.2f} ms  p99 {r['p99_ms']:.2f} ms  "
                      f"turns {r['turns']}  errors {r['session_error_count']}", flush=True)
    finally:
        for srv in bridges.values():
            await srv.stop()
        await answer.stop()
    return rows


async def overload_rows(c: int, seconds: float, srcs: dict[str, Path], echo: common.Server) -> list[dict]:
    rows = []
    for label, src in srcs.items():
        r = await overload.offer(c, seconds, echo, {}, src=src)
        r.pop("rss_samples")
        r["label"] = label
        rows.append(r)
        print(f"  overload {label}: C={c} p99 before {r['p99_before_ms']:.2f} ms, during "
              f"{r['p99_during_ms']:.2f} ms; excess refused {r['refused_mint'] + r['refused_socket']}, "
              f"admitted {r['excess_admitted']}; lost {r['lost_admitted']}", flush=True)
    return rows


def report(before: str, cpu: list[dict], turns: list[dict], over: list[dict], labels: list[str]) -> str:
    out = [f"before = {before[:12]}, after = this checkout"]
    out.append("")
    out.append(f"CPU per session at N={cpu[0]['sessions']}, ratio to the floor of the same repetition, "
               f"median [range] of {1 + max(r['rep'] for r in cpu)}")
    for rate in RATES:
        rs = [r for r in cpu if r["rate"] == rate]
        floor = median_range([r["cpu_pct"]["floor"] for r in rs])
        cells = "  ".join(f"{k} {median_range([r['ratio'][k] for r in rs])}" for k in labels)
        first, last = labels[0], labels[-1]
        change = median_range([r["cpu_pct"][last] / r["cpu_pct"][first] for r in rs])
        out.append(f"  {rate // 1000} kHz  floor cpu {floor} %  {cells}  ({last} / {first} {change})")
    out.append("")
    out.append("Turn: commit -> first audio, minus direct (p50 / p99 ms)")
    for rate in RATES:
        d = next(r for r in turns if r["rate"] == rate and r["label"] == "direct")
        cells = []
        for k in labels:
            r = next(x for x in turns if x["rate"] == rate and x["label"] == k)
            cells.append(f"{k} {r['p50_ms'] - d['p50_ms']:+.2f} / {r['p99_ms'] - d['p99_ms']:+.2f}"
                         f" ({r['session_error_count']} errors)")
        out.append(f"  {rate // 1000} kHz  direct {d['p50_ms']:.2f} / {d['p99_ms']:.2f}  " + "  ".join(cells))
    out.append("")
    out.append(f"Overload: C={over[0]['capacity']} streaming at 24 kHz, {over[0]['capacity']} more offered "
               f"over {overload.OFFER_SECONDS:g} s, each bridge's default settings")
    for r in over:
        ratio = r["p99_during_ms"] / r["p99_before_ms"] if r["p99_before_ms"] else float("inf")
        out.append(f"  {r['label']:6} p99 {r['p99_before_ms']:.2f} -> {r['p99_during_ms']:.2f} ms = {ratio:.2f}x; "
                   f"excess refused {r['refused_mint']} at mint + {r['refused_socket']} at the socket, "
                   f"admitted {r['excess_admitted']}; lost {r['lost_admitted']}, reordered {r['reordered']}, "
                   f"errors {r['error_count']}")
    return "\n".join(out)


async def main(args) -> int:
    common.pin_self()
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "src").mkdir()
        before = export(args.before, tmp / "src")
        srcs = {"before": tmp / "src", "after": common.ROOT}
        labels = list(srcs)
        echo = await common.start_echo_upstream()
        upstream = echo.ws_base + "/v1/realtime"
        servers: list[common.Server] = []
        try:
            floor = await common.start_floor(upstream)
            servers.append(floor)
            bridges = {}
            for label, src in srcs.items():
                (tmp / label).mkdir()
                bridges[label] = await common.start_bridge(str(tmp / label), upstream, src=src,
                                                           name=f"bridge {label}")
                servers.append(bridges[label])
            cpu = await cpu_rows(args.sessions, args.reps, args.seconds, floor, bridges)
            for srv in servers:
                await srv.stop()
            servers.clear()
            turns = await turn_rows(args.sessions, args.turns, srcs, tmp)
            over = await overload_rows(args.capacity, args.offer_seconds, srcs, echo)
        finally:
            for srv in servers:
                await srv.stop()
            await echo.stop()
    text = report(before, cpu, turns, over, labels)
    print("\n" + text)
    common.write_result(args.out, "before_after", {"before": before, "cpu": cpu, "turn": turns,
                                                    "overload": over,
                                                    "seconds": round(time.monotonic() - started, 1)})
    (args.out / "before_after.txt").write_text(text + "\n")
    print(f"\n({time.monotonic() - started:.0f} s; results in {args.out}/)")
    lost = (sum(r["lost"] for r in cpu) + sum(r["session_error_count"] for r in turns)
            + sum(r["lost_admitted"] + r["reordered"] + r["error_count"] for r in over))
    if lost:
        print(f"FAILED: {lost} frames lost, reordered or sessions failed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", required=True, help="a commit of this repository (hash, tag, HEAD~3)")
    ap.add_argument("--sessions", type=int, default=50, help="sessions of the CPU and turn rows")
    ap.add_argument("--reps", type=int, default=5, help="repetitions of the CPU rows")
    ap.add_argument("--seconds", type=float, default=8.0, help="seconds per CPU row")
    ap.add_argument("--turns", type=int, default=12, help="turns per session in the turn rows")
    ap.add_argument("--capacity", type=int, default=100,
                    help="sessions streaming before the overload offer (make bench's measured capacity)")
    ap.add_argument("--offer-seconds", type=float, default=16.0,
                    help="length of each overload run (half before the offer, half during)")
    ap.add_argument("--out", type=Path, default=common.ROOT / "bench" / "results")
    sys.exit(asyncio.run(main(ap.parse_args())))
