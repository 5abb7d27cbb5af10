"""Overload (issue 23, target 4): offered twice its capacity, the bridge keeps the sessions it
admitted at their latency and refuses the rest promptly.

    python bench/overload.py                   # sweep for capacity, then offer 2x (~2 min)
    python bench/overload.py --capacity 150    # skip the sweep
    python bench/overload.py --sweep-only      # the sweep alone: load readings against p99

1. **Sweep** (the overload rule off): N sessions streaming 20 ms frames at 24 kHz through
   the pinned bridge (bench/capacity.py's streams and checks) for each N of ``--levels``,
   with the bridge's own load readings (``speko_event_loop_lag_seconds``,
   ``speko_process_cpu_ratio`` from /metrics, sampled every 0.5 s) beside each row's p99.
   Capacity is the largest N whose p99 is within :data:`CAPACITY_P99_MS` of the smallest
   N's, with no frame lost and the bridge under one core: the same rule as ``make bench``'s
   "by load" column. These rows are how the defaults of ``SPEKO_OVERLOAD_LAG_MS`` and
   ``SPEKO_OVERLOAD_CPU_PERCENT`` were chosen (docs/configuration.md).
2. **Offer 2x** (a fresh bridge with its default overload settings, or ``--lag-ms`` /
   ``--cpu-percent``): C = capacity sessions start streaming; after the first half of the
   run, C more arrive evenly over :data:`OFFER_SECONDS`, each as a real client would:
   mint, then open the socket with the token, then stream. Reported: the first C's p99
   before the offer (unloaded) and during it, the excess refused at mint (503) and at the
   socket (4029), the time to refuse (from the mint request, or from the socket's opening,
   to the refusal), what /readyz said during the offer, and frames lost by any admitted
   session. Verdicts: p99 during <= 2x before, every excess session either refused or
   admitted without loss, p99 time to refuse <= :data:`REFUSE_P99_GOAL_MS`.
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

RATE = 24000
#: "Sustainable": p99 within this of the smallest level's (bench/run.py's capacity rule).
CAPACITY_P99_MS = 5.0
#: The excess arrives over this long: arrivals spread like real traffic, not one burst
#: (a burst of sockets all at one instant is a connection limit's job, SPEKO_MAX_SESSIONS).
OFFER_SECONDS = 4.0
#: Admitted sessions' p99 during the offer, at most this times the p99 before it.
P99_FACTOR_GOAL = 2.0
#: A refusal this late is not "prompt": a client waits at most this long to learn to go
#: elsewhere (a healthy connect is ~10 ms).
REFUSE_P99_GOAL_MS = 1000.0
OFF = {"SPEKO_OVERLOAD_LAG_MS": "0", "SPEKO_OVERLOAD_CPU_PERCENT": "0"}
#: Unset: the bridge's own defaults (common.bridge_env turns the rule off for other benches).
DEFAULTS = {"SPEKO_OVERLOAD_LAG_MS": None, "SPEKO_OVERLOAD_CPU_PERCENT": None}
MINT_BODY = {"provider": "openai", "model": "gpt-realtime", "inputSampleRate": RATE,
             "outputSampleRate": RATE, "ttlSeconds": 3600}
HEADERS = {"Authorization": f"Bearer {common.API_KEY}"}


async def scrape(http: aiohttp.ClientSession, base: str) -> dict[str, float]:
    """The bridge's load gauges and refusal counters (Prometheus text, unlabelled or summed)."""
    async with http.get(base + "/metrics") as r:
        text = await r.text()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("speko_") and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            key = name.replace('"', "")
            out[key] = out.get(key, 0.0) + float(value)
    return out


async def sample_load(http, server: common.Server, into: list[tuple], stop: asyncio.Event) -> None:
    """(lag s, cpu ratio, lag, /readyz status, RSS bytes, perf_counter time) every 0.5 s
    until ``stop``."""
    while not stop.is_set():
        try:
            m = await scrape(http, server.base)
            async with http.get(server.base + "/readyz") as r:
                ready = r.status
            into.append((m.get("speko_event_loop_lag_seconds", 0.0),
                         m.get("speko_process_cpu_ratio", 0.0), ready,
                         common.rss_bytes(server.pid), time.perf_counter()))
        except aiohttp.ClientError:
            pass
        try:
            await asyncio.wait_for(stop.wait(), 0.5)
        except TimeoutError:
            pass


async def sweep(levels: list[int], seconds: float, echo: common.Server) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        bridge = await common.start_bridge(tmp, echo.ws_base + "/v1/realtime", env=OFF)
        try:
            async with aiohttp.ClientSession() as http:
                for n in levels:
                    readings: list = []
                    stop = asyncio.Event()
                    sampler = asyncio.create_task(sample_load(http, bridge, readings, stop))
                    r = await capacity.run("bridge", "", n, seconds, RATE, server_pid=bridge.pid,
                                           bridge_base=bridge.base)
                    stop.set()
                    await sampler
                    # the readings while every session streamed (connect and tail left out)
                    steady = readings[len(readings) // 4: -2] or readings
                    lags = sorted(x[0] for x in steady)
                    cpus = sorted(x[1] for x in steady)
                    r["lag_ms_median"] = 1000 * statistics.median(lags)
                    r["lag_ms_p90"] = 1000 * common.pct(lags, 90)
                    r["cpu_gauge_median"] = 100 * statistics.median(cpus)
                    rows.append(r)
                    print(f"  sweep N={n:<4} p50 {r['p50_ms']:.2f} ms  p99 {r['p99_ms']:.2f} ms  "
                          f"cpu {r['cpu_pct']:.0f}%  lag gauge {r['lag_ms_median']:.2f} ms "
                          f"(p90 {r['lag_ms_p90']:.2f})  cpu gauge {r['cpu_gauge_median']:.0f}%  "
                          f"lost {r['lost']}", flush=True)
                    await asyncio.sleep(1.0)  # the previous sessions' records are written
        finally:
            await bridge.stop()
    return rows


def capacity_of(rows: list[dict]) -> int:
    base = rows[0]["p99_ms"]
    best = rows[0]["sessions"]
    for r in rows:
        if (r["lost"] == 0 and r["session_error_count"] == 0 and r["cpu_pct"] < 100
                and r["p99_ms"] - base < CAPACITY_P99_MS):
            best = r["sessions"]
    return best


class Offered:
    """One client of the excess: mint, open, stream; or the refusal and how long it took."""

    def __init__(self, frames: int) -> None:
        self.stream = capacity.Stream(RATE, frames)
        self.refused: str | None = None  # "mint" or "socket"
        self.refuse_ms: float | None = None
        self.error: str | None = None


async def _client(http, base: str, token: str | None, who: Offered, t0: float, first: int) -> None:
    """Stream frames ``first``.. of ``who`` paced from ``t0`` (frame k at t0 + k * 20 ms);
    mint first when ``token`` is None."""
    stream = who.stream
    url = base.replace("http", "ws", 1) + "/v1/realtime"
    if token is None:
        asked = time.perf_counter()
        async with http.post(base + "/v1/sessions", json=MINT_BODY, headers=HEADERS) as r:
            body = await r.json()
            if r.status == 503 and body["error"]["code"] == "overloaded":
                who.refused, who.refuse_ms = "mint", 1000 * (time.perf_counter() - asked)
                return
            if r.status != 201:
                who.error = f"mint {r.status} {body}"
                return
        token = body["token"]
    opened = time.perf_counter()
    ws = await http.ws_connect(url, protocols=[token], compress=0)
    stream.received = first * stream.F  # the frames before ``first`` were never sent
    stream.complete = first

    async def reader() -> None:
        async for msg in ws:
            if msg.type is aiohttp.WSMsgType.BINARY:
                stream.on_audio(msg.data, time.perf_counter())
            elif msg.type is aiohttp.WSMsgType.TEXT:
                frame = json.loads(msg.data)
                if frame.get("type") == "error":
                    if frame.get("code") == "overloaded":
                        who.refused, who.refuse_ms = "socket", 1000 * (time.perf_counter() - opened)
                    else:
                        who.error = f"error {frame}"
                    return
            if stream.complete >= stream.frames - capacity.TAIL_FRAMES:
                return

    task = asyncio.create_task(reader())
    try:
        for k in range(first, stream.frames):
            if task.done():
                break
            delay = t0 + k * capacity.FRAME_MS / 1000 - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            stream.sent[k] = time.perf_counter()
            await ws.send_bytes(stream.frame(k))
        try:
            await asyncio.wait_for(asyncio.shield(task), 20.0)
        except TimeoutError:
            pass
    finally:
        task.cancel()
        await ws.close()


def window_p99(streams: list[capacity.Stream], lo: int, hi: int) -> float | None:
    """p99 of the worst-sample latency of frames lo..hi-1 (complete ones) of every stream, ms."""
    values = [s.worst[k] * 1000 for s in streams for k in range(lo, min(hi, s.frames))
              if s.sent[k] and s.worst[k] and (k + 1) * s.F <= s.received]
    return common.pct(values, 99) if values else None


async def own_lag(into: list[tuple[float, float]], stop: asyncio.Event) -> None:
    """(when, how late) of a 2 ms timer in this process until ``stop``: the load generator
    timestamps every frame it receives, so its own stalls (a burst of new clients to set up)
    add to the latency it measures; printed beside the bridge's figures to tell them apart."""
    while not stop.is_set():
        asked = time.perf_counter()
        await asyncio.sleep(0.002)
        now = time.perf_counter()
        into.append((now, now - asked - 0.002))


async def offer(c: int, seconds: float, echo: common.Server, limits: dict, *,
                offer_after: float | None = None, excess: int | None = None,
                src: Path = common.ROOT) -> dict:
    """C sessions streaming, then ``excess`` (default C) more offered over OFFER_SECONDS,
    ``offer_after`` seconds after the warm-up (default: half way through); ``src``: the
    checkout whose bridge is offered them (bench/before_after.py)."""
    frames = int((capacity.WARMUP_S + seconds) * 1000 / capacity.FRAME_MS)
    warm = int(capacity.WARMUP_S * 1000 / capacity.FRAME_MS)
    after = seconds / 2 if offer_after is None else offer_after
    offer_at = warm + int(after * 1000 / capacity.FRAME_MS)  # frame where the excess starts
    n_excess = c if excess is None else excess
    with tempfile.TemporaryDirectory() as tmp:
        bridge = await common.start_bridge(tmp, echo.ws_base + "/v1/realtime",
                                           env={**DEFAULTS, **limits}, src=src)
        try:
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
                readings: list = []
                stop = asyncio.Event()
                sampler = asyncio.create_task(sample_load(http, bridge, readings, stop))
                lateness: list[tuple[float, float]] = []
                prober = asyncio.create_task(own_lag(lateness, stop))
                started = time.perf_counter()
                tokens = [s["token"] for s in await common.mint_tokens(http, bridge.base, c, RATE)]
                base = [Offered(frames) for _ in range(c)]
                t0 = time.perf_counter() + 1.0 + c * 0.004
                tasks = [asyncio.create_task(_client(http, bridge.base, tokens[i], base[i],
                                                     t0 + i * capacity.FRAME_MS / 1000 / c, 0))
                         for i in range(c)]
                excess = [Offered(frames) for _ in range(n_excess)]
                t_offer = t0 + offer_at * capacity.FRAME_MS / 1000
                await asyncio.sleep(max(0.0, t_offer - time.perf_counter()))
                for j in range(n_excess):
                    at = t_offer + j * OFFER_SECONDS / max(1, n_excess)
                    await asyncio.sleep(max(0.0, at - time.perf_counter()))
                    # this client's frame k is due at its t0 + k * 20 ms; the clients' phases
                    # spread over the 20 ms as the first C's are (independent microphones do
                    # not tick together: all at one phase, each 20 ms would bring a burst of
                    # frames that no real arrival of clients brings)
                    t0_j = t0 + j * capacity.FRAME_MS / 1000 / max(1, n_excess)
                    first = int((time.perf_counter() - t0_j) * 1000 / capacity.FRAME_MS) + 1
                    tasks.append(asyncio.create_task(_client(http, bridge.base, None, excess[j], t0_j, first)))
                results = await asyncio.gather(*tasks, return_exceptions=True)
                stop.set()
                await sampler
                await prober
                after = await scrape(http, bridge.base)
        finally:
            await bridge.stop()
    errors = [repr(r)[:200] for r in results if isinstance(r, BaseException)]
    errors += [o.error for o in base + excess if o.error]
    admitted = [o for o in excess if o.refused is None and o.error is None]
    refused = [o for o in excess if o.refused]
    expected = frames - capacity.TAIL_FRAMES

    def lost(o: Offered) -> int:
        return max(0, expected - o.stream.complete) if o.refused is None else 0

    streams = [o.stream for o in base]
    before = window_p99(streams, warm, offer_at)
    during = window_p99(streams, offer_at, frames - capacity.TAIL_FRAMES)
    times = sorted(o.refuse_ms for o in refused)
    during_offer = [x for x in readings if x[4] >= t_offer]
    t_warm = t0 + warm * capacity.FRAME_MS / 1000

    def own_p99(lo: float, hi: float) -> float:
        late = sorted(x[1] for x in lateness if lo <= x[0] < hi)
        return 1000 * common.pct(late, 99) if late else 0.0

    ready = [x[2] for x in during_offer]
    return {
        "capacity": c, "offered": c + n_excess, "seconds": seconds, "limits": limits,
        "t0_s": t0 - started, "offer_at_s": t_offer - started,
        "rss_samples": [(round(x[4] - started, 1), x[3]) for x in readings],
        "p99_before_ms": before, "p99_during_ms": during,
        # the first C's p99 per second of the run from the warm-up on (the offer starts at
        # offer_at_s): whether the arrivals or the load after them raise it
        "p99_by_second_ms": [window_p99(streams, k, k + 1000 // capacity.FRAME_MS)
                             for k in range(warm, frames - capacity.TAIL_FRAMES, 1000 // capacity.FRAME_MS)],
        "p99_excess_admitted_ms": (window_p99([o.stream for o in admitted], offer_at, frames)
                                   if admitted else None),
        "excess_admitted": len(admitted),
        "refused_mint": sum(o.refused == "mint" for o in excess),
        "refused_socket": sum(o.refused == "socket" for o in excess),
        "refuse_p50_ms": statistics.median(times) if times else None,
        "refuse_p99_ms": common.pct(times, 99) if times else None,
        "lost_admitted": sum(lost(o) for o in base + admitted),
        "reordered": sum(o.stream.bad for o in base + admitted),
        "errors": errors[:5], "error_count": len(errors),
        "readyz_503_share": (ready.count(503) / len(ready)) if ready else None,
        "lag_ms_max": 1000 * max((x[0] for x in during_offer), default=0.0),
        "generator_lag_p99_before_ms": own_p99(t_warm, t_offer),
        "generator_lag_p99_during_ms": own_p99(t_offer, float("inf")),
        "cpu_gauge_max": 100 * max((x[1] for x in during_offer), default=0.0),
        "overload_refusals_metric": {k: v for k, v in after.items() if "overload_refusals_total" in k},
    }


def verdicts(r: dict) -> list[tuple[str, str, str, bool]]:
    ratio = (r["p99_during_ms"] / r["p99_before_ms"]) if r["p99_before_ms"] else float("inf")
    refused = r["refused_mint"] + r["refused_socket"]
    return [
        (f"admitted p99 during 2x offer / before (C={r['capacity']})",
         f"{r['p99_during_ms']:.2f} / {r['p99_before_ms']:.2f} ms = {ratio:.2f}",
         f"<= {P99_FACTOR_GOAL:g}", ratio <= P99_FACTOR_GOAL),
        ("excess refused (mint 503 + socket 4029) / admitted",
         f"{r['refused_mint']} + {r['refused_socket']} / {r['excess_admitted']}",
         "refused > 0", refused > 0 and r["error_count"] == 0),
        ("time to refuse p50 / p99",
         f"{r['refuse_p50_ms'] or 0:.1f} / {r['refuse_p99_ms'] or 0:.1f} ms",
         f"p99 <= {REFUSE_P99_GOAL_MS:g} ms", refused > 0 and r["refuse_p99_ms"] <= REFUSE_P99_GOAL_MS),
        ("frames lost or reordered, admitted sessions", f"{r['lost_admitted']} / {r['reordered']}",
         "0", r["lost_admitted"] == 0 and r["reordered"] == 0),
        ("/readyz 503 during the offer", f"{100 * (r['readyz_503_share'] or 0):.0f}% of probes",
         "> 0", (r["readyz_503_share"] or 0) > 0),
    ]


def report(rows: list[dict] | None, c: int, r: dict | None) -> str:
    out = []
    if rows:
        out.append("Sweep (overload rule off): load readings against latency, 24 kHz")
        out.append(f"{'N':>5} {'p50 ms':>8} {'p99 ms':>8} {'cpu %':>6} {'lag med ms':>10} "
                   f"{'lag p90 ms':>10} {'cpu gauge %':>11} {'lost':>5}")
        for x in rows:
            out.append(f"{x['sessions']:>5} {x['p50_ms']:>8.2f} {x['p99_ms']:>8.2f} {x['cpu_pct']:>6.0f} "
                       f"{x['lag_ms_median']:>10.2f} {x['lag_ms_p90']:>10.2f} {x['cpu_gauge_median']:>11.0f} "
                       f"{x['lost']:>5}")
        out.append(f"capacity: {c} sessions (largest N with p99 within {CAPACITY_P99_MS:g} ms of "
                   f"N={rows[0]['sessions']}'s, nothing lost, cpu < 100%)")
    if r:
        out.append("")
        out.append(f"Offered 2x: {r['capacity']} streaming, {r['capacity']} more over {OFFER_SECONDS:g} s "
                   f"(limits: {r['limits'] or 'defaults'}); peak readings: lag {r['lag_ms_max']:.1f} ms, "
                   f"cpu {r['cpu_gauge_max']:.0f}%; the load generator's own timer lateness p99 "
                   f"{r['generator_lag_p99_before_ms']:.2f} ms before, "
                   f"{r['generator_lag_p99_during_ms']:.2f} ms during")
        for name, figure, goal, ok in verdicts(r):
            out.append(f"  {name:<48} {figure:<32} {goal:<16} {'PASS' if ok else 'FAIL'}")
        if r["errors"]:
            out.append("  errors: " + "; ".join(r["errors"]))
    return "\n".join(out)


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--levels", default="25,50,100,150,200,250",
                    help="sweep: comma-separated session counts")
    ap.add_argument("--seconds", type=float, default=8.0, help="seconds per sweep level")
    ap.add_argument("--offer-seconds", type=float, default=16.0,
                    help="length of the 2x run (half before the offer, half during)")
    ap.add_argument("--capacity", type=int, help="skip the sweep, use this capacity")
    ap.add_argument("--sweep-only", action="store_true")
    ap.add_argument("--lag-ms", help="SPEKO_OVERLOAD_LAG_MS of the 2x run (default: the bridge's)")
    ap.add_argument("--cpu-percent", help="SPEKO_OVERLOAD_CPU_PERCENT of the 2x run (default: the bridge's)")
    ap.add_argument("--out", type=Path, default=common.ROOT / "bench" / "results")
    args = ap.parse_args()
    common.pin_self()
    echo = await common.start_echo_upstream()
    rows, r = None, None
    try:
        if args.capacity:
            c = args.capacity
        else:
            rows = await sweep([int(x) for x in args.levels.split(",")], args.seconds, echo)
            c = capacity_of(rows)
        if not args.sweep_only:
            limits = {}
            if args.lag_ms is not None:
                limits["SPEKO_OVERLOAD_LAG_MS"] = args.lag_ms
            if args.cpu_percent is not None:
                limits["SPEKO_OVERLOAD_CPU_PERCENT"] = args.cpu_percent
            r = await offer(c, args.offer_seconds, echo, limits)
    finally:
        await echo.stop()
    print(report(rows, c, r), flush=True)
    common.write_result(args.out, "overload", {"sweep": rows, "capacity": c, "offer": r})
    return 0 if r is None or all(v[3] for v in verdicts(r)) else 1


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    raise SystemExit(asyncio.run(main()))
