"""Two checkouts of the bridge side by side in ONE run, each beside the floor relay: CPU per
session and added round-trip latency at the same load. For "is this change slower?"
questions (a refactor, an optimisation), where only figures from one run compare.

    .venv/bin/python bench/compare.py --before /path/to/old/checkout [--sessions 50] [--seconds 15]

The old checkout runs with this venv's packages (``python -m speko_bridge`` from its own
directory). Targets alternate (floor, before, after) per rate and round, so slow drifts of a
shared machine hit each alike; the table gives each round and the median ratio to the floor.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import capacity  # noqa: E402
import common  # noqa: E402


async def main(before: Path, sessions: int, seconds: float, rounds: int) -> None:
    common.pin_self()
    echo = await common.start_echo_upstream()
    floor = await common.start_floor(echo.ws_base + "/v1/realtime")
    with tempfile.TemporaryDirectory() as d_old, tempfile.TemporaryDirectory() as d_new:
        upstream = echo.ws_base + "/v1/realtime"
        bridges = {"before": await common.start_bridge(d_old, upstream, src=before, name="before"),
                   "after": await common.start_bridge(d_new, upstream)}
        rows: dict[tuple[str, int], list[dict]] = {}
        try:
            for rnd in range(rounds):
                for rate in (16000, 24000):
                    for target in ("floor", "before", "after"):
                        if target == "floor":
                            r = await capacity.run("floor", floor.ws_base + "/relay", sessions, seconds, rate,
                                                   server_pid=floor.pid)
                        else:
                            b = bridges[target]
                            r = await capacity.run("bridge", None, sessions, seconds, rate,
                                                   server_pid=b.pid, bridge_base=b.base)
                        rows.setdefault((target, rate), []).append(r)
                        print(f"round {rnd + 1} {rate} Hz {target:6} cpu {r['cpu_pct']:.1f}%  "
                              f"p50 {r['p50_ms']:.2f} ms  p99 {r['p99_ms']:.2f} ms  lost {r['lost']}", flush=True)
        finally:
            for b in bridges.values():
                await b.stop()
            await floor.stop()
            await echo.stop()
    print(f"\nN={sessions}, {seconds:g} s a run, {rounds} rounds; CPU of the process under test "
          "(% of one core), median over rounds, and its ratio to the floor in the same rounds")
    print(f"{'rate':>6} {'floor':>7} {'before':>7} {'after':>7} {'before/floor':>13} {'after/floor':>12} "
          f"{'after/before':>13}")
    for rate in (16000, 24000):
        med = {t: statistics.median(r["cpu_pct"] for r in rows[(t, rate)]) for t in ("floor", "before", "after")}
        ratios = {t: statistics.median(a["cpu_pct"] / f["cpu_pct"] for a, f in zip(rows[(t, rate)], rows[("floor", rate)]))
                  for t in ("before", "after")}
        print(f"{rate:>6} {med['floor']:>7.1f} {med['before']:>7.1f} {med['after']:>7.1f} "
              f"{ratios['before']:>13.2f} {ratios['after']:>12.2f} {med['after'] / med['before']:>13.2f}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", type=Path, required=True, help="the other checkout's root")
    ap.add_argument("--sessions", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    asyncio.run(main(args.before.resolve(), args.sessions, args.seconds, args.rounds))
