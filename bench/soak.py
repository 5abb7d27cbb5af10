"""Soak: N sessions streaming through the bridge for a long time, nothing lost, no leak.

    python bench/soak.py                      # 200 sessions, 600 s
    python bench/soak.py --seconds 30         # the short version tests/test_bench_smoke.py runs
    python bench/soak.py --sessions auto      # at the capacity bench/overload.py's sweep measures (make soak)
    python bench/soak.py --sessions auto --factor 2   # offered twice that (make soak-overload)

Each session streams 20 ms PCM16 frames at real-time pace through the bridge (its own
process, pinned to one core) to the OpenAI simulator in echo mode, and checks what comes
back with bench/capacity.py's sequence-numbered frames: a frame is lost if its samples never
all arrive, reordered if its middle sample does not carry its own number. The bridge's RSS
is sampled every second; growth is the last sample against the baseline taken once every
session is streaming and the buffers have reached their working size (min(60 s, a third of
the run) in). Prints a table, writes ``soak.json``, exits 1 if a frame was lost or
reordered, a session failed, or RSS grew by 5% or more.

``--sessions auto`` first measures the bridge's sustainable capacity C with
bench/overload.py's sweep (the largest N whose p99 stays within 5 ms of the smallest N's,
nothing lost, under one core) and soaks at C. ``--factor 2`` offers twice that: C sessions
stream from the start and C more arrive over 4 s once the first have streamed
:data:`OFFER_AFTER_SECONDS`, each minting and opening like a real client; the bridge's
overload rule (speko_bridge/load.py) refuses what it cannot carry. The goals then are that
the admitted sessions (the first C and any of the excess let in) lose nothing and the RSS
stays bounded (the same 5%, from a baseline taken after the offer).

24 kHz both ways by default: the client rate equals the provider's, as for most OpenAI
clients; 200 resampled sessions exceed one core of this machine (see bench/run.py), and an
overloaded server shows backlog, not leaks.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import capacity
import common
import overload

GROWTH_LIMIT = 0.05
#: --factor > 1: the excess arrives this long after the first sessions' warm-up, so the
#: load readings have settled at C's level first.
OFFER_AFTER_SECONDS = 10.0
#: --sessions auto: the sweep's levels and seconds per level.
AUTO_LEVELS = (25, 50, 100, 150, 200, 250)
AUTO_SECONDS = 8.0


async def sample_rss(pid: int, into: list[tuple[float, int]], stop: asyncio.Event) -> None:
    t0 = time.monotonic()
    while not stop.is_set():
        into.append((time.monotonic() - t0, common.rss_bytes(pid)))
        try:
            await asyncio.wait_for(stop.wait(), 1.0)
        except TimeoutError:
            pass


async def soak(n: int, seconds: float, rate: int) -> dict:
    echo = await common.start_echo_upstream()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            bridge = await common.start_bridge(tmp, echo.ws_base + "/v1/realtime")
            try:
                samples: list[tuple[float, int]] = []
                stop = asyncio.Event()
                sampler = asyncio.create_task(sample_rss(bridge.pid, samples, stop))
                started = time.monotonic()
                result = await capacity.run("bridge", "", n, seconds, rate, server_pid=bridge.pid,
                                            bridge_base=bridge.base)
                wall = time.monotonic() - started
                stop.set()
                await sampler
            finally:
                await bridge.stop()
    finally:
        await echo.stop()
    # the run: mint + connect (~1 s + 4 ms/session), 1 s warm-up, `seconds` of streaming
    streaming_from = 2.0 + n * 0.004
    baseline_at = streaming_from + min(60.0, seconds / 3)
    streaming_until = streaming_from + 1.0 + seconds
    base = next((r for t, r in samples if t >= baseline_at), samples[-1][1])
    during = [r for t, r in samples if t <= streaming_until]
    end = during[-1] if during else samples[-1][1]
    growth = end / base - 1
    return {
        **result,
        "wall_seconds": round(wall, 1),
        "rss_start_mib": round(samples[0][1] / 2**20, 1),
        "rss_baseline_mib": round(base / 2**20, 1),
        "rss_end_mib": round(end / 2**20, 1),
        "rss_peak_mib": round(max(r for _, r in samples) / 2**20, 1),
        "rss_growth_pct": round(100 * growth, 2),
        "baseline_at_s": round(baseline_at, 1),
        "rss_samples": [(round(t, 1), r) for t, r in samples],
    }


async def soak_offered(n: int, factor: float, seconds: float) -> dict:
    """``n`` sessions streaming for ``seconds``, ``n * (factor - 1)`` more offered after
    OFFER_AFTER_SECONDS (bench/overload.py's run); RSS growth from a baseline taken once the
    offer is over and the buffers have reached their working size."""
    echo = await common.start_echo_upstream()
    try:
        r = await overload.offer(n, seconds, echo, {}, offer_after=OFFER_AFTER_SECONDS,
                                 excess=round(n * (factor - 1)))
    finally:
        await echo.stop()
    samples = r.pop("rss_samples")
    settled = r["offer_at_s"] + overload.OFFER_SECONDS
    baseline_at = settled + min(60.0, max(0.0, seconds - OFFER_AFTER_SECONDS) / 3)
    streaming_until = r["t0_s"] + capacity.WARMUP_S + seconds
    base = next((v for t, v in samples if t >= baseline_at), samples[-1][1])
    during = [v for t, v in samples if t <= streaming_until]
    end = during[-1] if during else samples[-1][1]
    return {**r, "factor": factor, "baseline_at_s": round(baseline_at, 1),
            "rss_start_mib": round(samples[0][1] / 2**20, 1), "rss_baseline_mib": round(base / 2**20, 1),
            "rss_end_mib": round(end / 2**20, 1),
            "rss_peak_mib": round(max(v for _, v in samples) / 2**20, 1),
            "rss_growth_pct": round(100 * (end / base - 1), 2), "rss_samples": samples}


def offered_ok(r: dict) -> bool:
    return (r["lost_admitted"] == 0 and r["reordered"] == 0 and r["error_count"] == 0
            and r["rss_growth_pct"] < 100 * GROWTH_LIMIT)


def offered_table(r: dict) -> str:
    rows = [
        ("sessions streaming from the start", f"{r['capacity']}", ""),
        ("sessions offered on top", f"{r['offered'] - r['capacity']}", ""),
        ("refused at mint (503) / socket (4029)", f"{r['refused_mint']} / {r['refused_socket']}", ""),
        ("excess admitted", f"{r['excess_admitted']}", ""),
        ("time to refuse p50 / p99 ms", f"{r['refuse_p50_ms'] or 0:.1f} / {r['refuse_p99_ms'] or 0:.1f}", ""),
        ("p99 before / during the offer ms",
         f"{r['p99_before_ms'] or 0:.2f} / {r['p99_during_ms'] or 0:.2f}", ""),
        ("frames lost, admitted sessions", f"{r['lost_admitted']}", "0"),
        ("frames reordered", f"{r['reordered']}", "0"),
        ("session errors", f"{r['error_count']}", "0"),
        ("RSS start / baseline / end MiB",
         f"{r['rss_start_mib']} / {r['rss_baseline_mib']} / {r['rss_end_mib']}", ""),
        ("RSS growth after baseline", f"{r['rss_growth_pct']:+.2f} %", "< 5 %"),
    ]
    return _render(f"Soak at {r['factor']:g}x: {r['capacity']} sessions + {r['offered'] - r['capacity']} "
                   f"offered, {r['seconds']:g} s (baseline RSS at {r['baseline_at_s']} s)", rows, offered_ok(r))


def _render(title: str, rows: list[tuple[str, str, str]], ok: bool) -> str:
    """A titled figure / value / goal table and its verdict line."""
    width = max(len(a) for a, _, _ in rows)
    out = [title, f"{'figure':<{width}}  {'value':<28}  goal", f"{'-' * width}  {'-' * 28}  -----"]
    out += [f"{a:<{width}}  {b:<28}  {c}" for a, b, c in rows]
    out.append(f"verdict: {'PASS' if ok else 'FAIL'}")
    return "\n".join(out)


def table(r: dict) -> str:
    ok = (r["lost"] == 0 and r["reordered"] == 0 and r["session_error_count"] == 0
          and r["rss_growth_pct"] < 100 * GROWTH_LIMIT)
    rows = [
        ("sessions", f"{r['sessions']}", ""),
        ("seconds streamed", f"{r['seconds']:g}", ""),
        ("rate", f"{r['rate']} Hz, 20 ms frames", ""),
        ("frames sent", f"{r['frames_sent']}", ""),
        ("frames lost", f"{r['lost']}", "0"),
        ("frames reordered", f"{r['reordered']}", "0"),
        ("extra samples", f"{r['extra_samples']}", "0"),
        ("session errors", f"{r['session_error_count']}", "0"),
        ("latency p50 / p99 ms", f"{r['p50_ms']:.2f} / {r['p99_ms']:.2f}", ""),
        ("bridge cpu %", f"{r['cpu_pct']:.1f}", ""),
        ("RSS start / baseline / end MiB",
         f"{r['rss_start_mib']} / {r['rss_baseline_mib']} / {r['rss_end_mib']}", ""),
        ("RSS growth after baseline", f"{r['rss_growth_pct']:+.2f} %", "< 5 %"),
    ]
    return _render(f"Soak: bridge with {r['sessions']} sessions for {r['seconds']:g} s "
                   f"(baseline RSS at {r['baseline_at_s']} s)", rows, ok)


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", default="200",
                    help="sessions, or 'auto': the capacity bench/overload.py's sweep measures")
    ap.add_argument("--factor", type=float, default=1.0,
                    help="offer this times --sessions (> 1: the excess arrives after "
                         f"{OFFER_AFTER_SECONDS:g} s and the overload rule decides; 24 kHz)")
    ap.add_argument("--seconds", type=float, default=600.0)
    ap.add_argument("--rate", type=int, default=24000, choices=(16000, 24000))
    ap.add_argument("--out", type=Path, default=common.ROOT / "bench" / "results")
    args = ap.parse_args()
    common.pin_self()
    if args.sessions == "auto":
        echo = await common.start_echo_upstream()
        try:
            rows = await overload.sweep(list(AUTO_LEVELS), AUTO_SECONDS, echo)
        finally:
            await echo.stop()
        sessions = overload.capacity_of(rows)
        print(f"capacity measured: {sessions} sessions", flush=True)
    else:
        sessions = int(args.sessions)
    if args.factor > 1:
        result = await soak_offered(sessions, args.factor, args.seconds)
        print(offered_table(result), flush=True)
        if result["errors"]:
            print("session errors:", *result["errors"], sep="\n  ")
        common.write_result(args.out, "soak_overload", result)
        return 0 if offered_ok(result) else 1
    result = await soak(sessions, args.seconds, args.rate)
    print(table(result), flush=True)
    if result["session_errors"]:
        print("session errors:", *result["session_errors"], sep="\n  ")
    common.write_result(args.out, "soak", result)
    ok = (result["lost"] == 0 and result["reordered"] == 0 and result["session_error_count"] == 0
          and result["rss_growth_pct"] < 100 * GROWTH_LIMIT)
    return 0 if ok else 1


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    raise SystemExit(asyncio.run(main()))
