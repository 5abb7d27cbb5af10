"""The stack's own settings, side by side: CPU per session of floor and bridge variants at
N paced sessions (bench/capacity.py's load), several repetitions, medians and spread.

Issue 23 target 6: the floor relay (bench/floor_relay.py) and the bridge run with the
uvicorn/aiohttp settings that measured best, so the bridge's ratios are against the best
this stack does, not against its defaults. Also the before/after harness for the bridge's
own changes (a variant may run another checkout: ``"src": "/path"``), and the profiler's
driver (``--profile DIR``: py-spy on every variant, raw folded stacks per row, sampled
only while the GIL is held, so Python at work and not the loop waiting; ``--perf DIR``:
Linux perf, native stacks, for what py-spy cannot see inside uvloop's C loop).

    python bench/stack.py --floor base= --floor nodeflate=--no-deflate \\
        --bridge 'chosen={}' --bridge 'legacy={"ws": "websockets"}' --sessions 50 --reps 3

A floor variant is ``name=ARGS`` (bench/floor_relay.py's options), a bridge variant
``name=JSON`` (bench/bridge_variant.py's keys, plus ``src``). Ratios are taken within one
repetition against the first floor variant, then the median over repetitions is shown
with its range. ``--client-deflate`` makes the load generator offer permessage-deflate,
as every browser does.

What was tried, and the table that chose the settings: docs/performance.md ("The stack's
settings").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import capacity  # noqa: E402
import common  # noqa: E402


def parse(values: list[str]) -> list[tuple[str, str]]:
    out = []
    for v in values:
        name, _, spec = v.partition("=")
        out.append((name, spec))
    return out


async def start_floor(upstream: str, args: str) -> common.Server:
    return await common.spawn("floor relay", ["bench/floor_relay.py", "--port", "{port}", "--upstream",
                                              upstream, *shlex.split(args)])


async def start_bridge(data_dir: str, upstream: str, spec: str) -> common.Server:
    overrides = json.loads(spec or "{}")
    src = Path(overrides.pop("src", common.ROOT))
    script = str(common.ROOT / "bench" / "bridge_variant.py")
    return await common.spawn("bridge", [script, json.dumps(overrides), "--port", "{port}",
                                         "--log-level", "warning"],
                              env=common.bridge_env(data_dir, upstream), cwd=src)


def fmt_range(values: list[float], digits: int = 2) -> str:
    return (f"{statistics.median(values):.{digits}f} "
            f"[{min(values):.{digits}f}-{max(values):.{digits}f}]")


async def main(args) -> int:
    common.pin_self()
    if args.client_deflate:
        capacity.CLIENT_COMPRESS = 15
    floors, bridges = parse(args.floor), parse(args.bridge)
    rates = [int(r) for r in args.rates.split(",")]
    echo = await common.start_echo_upstream()
    upstream = echo.ws_base + "/v1/realtime"
    servers = [echo]
    rows: dict[tuple[str, int], list[dict]] = {}
    ratios: dict[tuple[str, int], list[float]] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            live = {}
            for name, spec in floors:
                live["floor " + name] = (await start_floor(upstream, spec), None)
            for i, (name, spec) in enumerate(bridges):
                d = Path(tmp) / str(i)
                d.mkdir()
                live["bridge " + name] = (await start_bridge(str(d), upstream, spec), "bridge")
            servers += [s for s, _ in live.values()]
            ref = "floor " + floors[0][0] if floors else None
            for rep in range(args.reps):
                for rate in rates:
                    cpu = {}
                    for label, (srv, kind) in live.items():
                        url = None if kind else srv.ws_base + "/relay"
                        spy = None
                        if args.profile:
                            out = Path(args.profile) / f"{label.replace(' ', '-')}-{rate}-{rep}.txt"
                            out.parent.mkdir(parents=True, exist_ok=True)
                            spy = subprocess.Popen(
                                [shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy"),
                                 "record", "--nonblocking", "--gil", "-f", "raw", "-r", "200", "-p", str(srv.pid),
                                 "-d", str(int(args.seconds + 2)), "-o", str(out)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                        perf = None
                        if args.perf:
                            out = Path(args.perf) / f"{label.replace(' ', '-')}-{rate}-{rep}.data"
                            out.parent.mkdir(parents=True, exist_ok=True)
                            perf = subprocess.Popen(
                                ["perf", "record", "-q", "-F", "999", "-g", "-p", str(srv.pid), "-o", str(out),
                                 "--", "sleep", str(int(args.seconds + 1))],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                        r = await capacity.run(kind or "floor", url, args.sessions, args.seconds, rate,
                                               server_pid=srv.pid, bridge_base=srv.base)
                        if spy:
                            spy.wait()
                        if perf:
                            perf.wait()
                        rows.setdefault((label, rate), []).append(r)
                        cpu[label] = r["cpu_pct"]
                        print(f"  rep {rep} {label:28} {rate} Hz cpu {r['cpu_pct']:6.1f}%  "
                              f"p50 {r['p50_ms']:.2f} p99 {r['p99_ms']:.2f} ms  lost {r['lost']}", flush=True)
                    if ref:
                        for label, c in cpu.items():
                            ratios.setdefault((label, rate), []).append(c / cpu[ref])
    finally:
        for s in servers:
            await s.stop()
    print(f"\n{args.sessions} sessions, {args.seconds:g} s per row, {args.reps} repetitions: median [min-max]")
    print(f"{'variant':30} {'rate':>6}  {'cpu %':>20}  {'x ' + (ref or '-'):>24}  {'p99 ms':>20}  lost")
    for (label, rate), rs in rows.items():
        print(f"{label:30} {rate:>6}  {fmt_range([r['cpu_pct'] for r in rs], 1):>20}  "
              f"{fmt_range(ratios.get((label, rate), [0.0])):>24}  "
              f"{fmt_range([r['p99_ms'] for r in rs]):>20}  {sum(r['lost'] + r['reordered'] for r in rs)}")
    if args.json:
        Path(args.json).write_text(json.dumps({f"{k[0]} {k[1]}": v for k, v in rows.items()}, indent=1))
    return 0


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--floor", action="append", default=[], help="name=floor_relay.py options")
    ap.add_argument("--bridge", action="append", default=[], help="name=JSON overrides")
    ap.add_argument("--sessions", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--rates", default="16000,24000")
    ap.add_argument("--client-deflate", action="store_true")
    ap.add_argument("--profile", help="directory for py-spy's raw profiles of every variant")
    ap.add_argument("--perf", help="directory for perf's native profiles (perf record -g) of every variant; "
                    "needs Linux perf (Debian: linux-perf) and root or perf_event_paranoid <= 1")
    ap.add_argument("--json", help="write every row here")
    sys.exit(asyncio.run(main(ap.parse_args())))
