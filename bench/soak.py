"""Soak: N sessions streaming through the bridge for a long time, nothing lost, no leak.

    python bench/soak.py                      # 200 sessions, 600 s (make soak)
    python bench/soak.py --seconds 30         # the short version tests/test_bench_smoke.py runs

Each session streams 20 ms PCM16 frames at real-time pace through the bridge (its own
process, pinned to one core) to the OpenAI simulator in echo mode, and checks what comes
back with bench/capacity.py's sequence-numbered frames: a frame is lost if its samples never
all arrive, reordered if its middle sample does not carry its own number. The bridge's RSS
is sampled every second; growth is the last sample against the baseline taken once every
session is streaming and the buffers have reached their working size (min(60 s, a third of
the run) in). Prints a table, writes ``soak.json``, exits 1 if a frame was lost or
reordered, a session failed, or RSS grew by 5% or more.

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

GROWTH_LIMIT = 0.05


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
    width = max(len(a) for a, _, _ in rows)
    out = [f"Soak: bridge with {r['sessions']} sessions for {r['seconds']:g} s "
           f"(baseline RSS at {r['baseline_at_s']} s)",
           f"{'figure':<{width}}  {'value':<28}  goal", f"{'-' * width}  {'-' * 28}  -----"]
    out += [f"{a:<{width}}  {b:<28}  {c}" for a, b, c in rows]
    out.append(f"verdict: {'PASS' if ok else 'FAIL'}")
    return "\n".join(out)


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=600.0)
    ap.add_argument("--rate", type=int, default=24000, choices=(16000, 24000))
    ap.add_argument("--out", type=Path, default=common.ROOT / "bench" / "results")
    args = ap.parse_args()
    common.pin_self()
    result = await soak(args.sessions, args.seconds, args.rate)
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
