"""Issue 23's targets for two versions of the bridge in one run: an earlier commit or checkout
("before") and this checkout ("after"), side by side on the same machine in the same hour,
so that what changed is not read off two runs of a noisy machine. Also the quick "is this
change slower?" check of a refactor or an optimisation (``--rows cpu``).

    python bench/before_after.py --before 7786eed          # the commit before issue 23
    python bench/before_after.py --before 7786eed --reps 3 --turns 8 --out /tmp/ba
    python bench/before_after.py --before /path/to/old/checkout --rows cpu --reps 2

A "before" commit is exported with ``git archive`` into a temporary directory; a "before"
directory is served as it is. Either runs with this checkout's environment (the same
Python and libraries); both bridges run pinned to the server core with the same settings
(``bench/common.bridge_env``).

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

``--rows`` picks which of the three to run (default all).

The resampler's figures (target 3) already compare the recipe before issue 23 with the
current one in ``bench/micro.py``; the soak (target 5) runs ten minutes and has its own
command (``make soak``); the stack's settings (target 6) are ``bench/stack.py``'s.
Results: ``before_after.json`` and ``before_after.txt`` in ``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import capacity  # noqa: E402
import common  # noqa: E402
import overload  # noqa: E402
import run  # noqa: E402
from stack import fmt_range as median_range  # noqa: E402

RATES = run.RATES
ROWS = ("cpu", "turn", "overload")


def export(rev: str, into: Path) -> str:
    """``rev`` of this repository's history, as files in ``into``; its full commit id."""
    full = subprocess.run(["git", "rev-parse", "--verify", rev + "^{commit}"], cwd=common.ROOT,
                          check=True, capture_output=True, text=True).stdout.strip()
    archive = subprocess.run(["git", "archive", full], cwd=common.ROOT, check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return full


async def cpu_rows(n: int, reps: int, seconds: float, floor: common.Server,
                   bridges: dict[str, common.Server]) -> list[dict]:
    rows = []
    order = [("floor", floor), *bridges.items()]
    for rep in range(reps):
        turn_order = order[rep % len(order):] + order[:rep % len(order)]
        for rate in RATES:
            cpu, p99, lost = {}, {}, 0
            for label, srv in turn_order:
                is_floor = label == "floor"
                r = await capacity.run("floor" if is_floor else "bridge",
                                       srv.ws_base + "/relay" if is_floor else None, n, seconds, rate,
                                       server_pid=srv.pid, bridge_base=None if is_floor else srv.base)
                cpu[label], p99[label] = r["cpu_pct"], r["p99_ms"]
                lost += r["lost"] + r["reordered"] + r["session_error_count"]
            row = {"rep": rep, "rate": rate, "sessions": n, "cpu_pct": cpu, "p99_ms": p99, "lost": lost,
                   "ratio": {k: cpu[k] / cpu["floor"] for k in bridges if cpu["floor"]}}
            rows.append(row)
            print(f"  cpu rep {rep} {rate} Hz N={n}: " + "  ".join(
                f"{k} {v:.1f}% (p99 {p99[k]:.2f} ms)" for k, v in cpu.items()) + "  ratios " + "  ".join(
                f"{k} {v:.2f}" for k, v in row["ratio"].items()), flush=True)
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
    out = [f"before = {before if '/' in before else before[:12]}, after = this checkout"]
    if cpu:
        out += cpu_report(cpu, labels)
    if turns:
        out += turn_report(turns, labels)
    if over:
        out += overload_report(over)
    return "\n".join(out)


def cpu_report(cpu: list[dict], labels: list[str]) -> list[str]:
    out = [""]
    out.append(f"CPU per session at N={cpu[0]['sessions']}, ratio to the floor of the same repetition, "
               f"median [range] of {1 + max(r['rep'] for r in cpu)}")
    for rate in RATES:
        rs = [r for r in cpu if r["rate"] == rate]
        floor = median_range([r["cpu_pct"]["floor"] for r in rs])
        cells = "  ".join(f"{k} {median_range([r['ratio'][k] for r in rs])}" for k in labels)
        first, last = labels[0], labels[-1]
        change = median_range([r["cpu_pct"][last] / r["cpu_pct"][first] for r in rs])
        out.append(f"  {rate // 1000} kHz  floor cpu {floor} %  {cells}  ({last} / {first} {change})")
    return out


def turn_report(turns: list[dict], labels: list[str]) -> list[str]:
    out = [""]
    out.append("Turn: commit -> first audio, minus direct (p50 / p99 ms)")
    for rate in RATES:
        d = next(r for r in turns if r["rate"] == rate and r["label"] == "direct")
        cells = []
        for k in labels:
            r = next(x for x in turns if x["rate"] == rate and x["label"] == k)
            cells.append(f"{k} {r['p50_ms'] - d['p50_ms']:+.2f} / {r['p99_ms'] - d['p99_ms']:+.2f}"
                         f" ({r['session_error_count']} errors)")
        out.append(f"  {rate // 1000} kHz  direct {d['p50_ms']:.2f} / {d['p99_ms']:.2f}  " + "  ".join(cells))
    return out


def overload_report(over: list[dict]) -> list[str]:
    out = [""]
    out.append(f"Overload: C={over[0]['capacity']} streaming at 24 kHz, {over[0]['capacity']} more offered "
               f"over {overload.OFFER_SECONDS:g} s, each bridge's default settings")
    for r in over:
        ratio = r["p99_during_ms"] / r["p99_before_ms"] if r["p99_before_ms"] else float("inf")
        out.append(f"  {r['label']:6} p99 {r['p99_before_ms']:.2f} -> {r['p99_during_ms']:.2f} ms = {ratio:.2f}x; "
                   f"excess refused {r['refused_mint']} at mint + {r['refused_socket']} at the socket, "
                   f"admitted {r['excess_admitted']}; lost {r['lost_admitted']}, reordered {r['reordered']}, "
                   f"errors {r['error_count']}")
    return out


async def main(args) -> int:
    common.pin_self()
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        if Path(args.before).is_dir():
            before_src = Path(args.before).resolve()
            before = str(before_src)
        else:
            before_src = tmp / "src"
            before_src.mkdir()
            before = export(args.before, before_src)
        srcs = {"before": before_src, "after": common.ROOT}
        labels = list(srcs)
        wanted = set(args.rows.split(","))
        if not wanted <= set(ROWS):
            raise SystemExit(f"--rows: choose from {', '.join(ROWS)}")
        cpu: list[dict] = []
        turns: list[dict] = []
        over: list[dict] = []
        echo = await common.start_echo_upstream()
        upstream = echo.ws_base + "/v1/realtime"
        servers: list[common.Server] = []
        try:
            if "cpu" in wanted:
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
            if "turn" in wanted:
                turns = await run.run_turns(args.sessions, args.turns, srcs)
            if "overload" in wanted:
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
    ap.add_argument("--before", required=True,
                    help="a commit of this repository (hash, tag, HEAD~3) or another checkout's directory")
    ap.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated, of {', '.join(ROWS)}")
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
