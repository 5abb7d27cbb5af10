"""SQLite versus Redis, and the drain: what the shared store costs and how long a stop takes.

    .venv/bin/python bench/stores.py            # ~30 s; bench/results/stores.json
    .venv/bin/python bench/stores.py --smoke    # a few seconds, small sizes

- consume latency: ``store.consume`` (the single-use check every socket open makes), one
  at a time, p50/p99, against a SQLite file and a real redis-server on loopback;
- mint rps: ``POST /v1/sessions`` at 16 concurrent clients against a bridge process on
  each backend (pinned to core 0; Redis and the load on core 1);
- drain: N live sessions on a bridge (Redis backend, SPEKO_DRAIN_SECONDS=0), SIGTERM, time
  until every client has its 1001 close and until the process has exited, and how many
  records were written as ended with 1001.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import common  # noqa: E402
import mint  # noqa: E402

from speko_bridge.params import SessionParams  # noqa: E402
from speko_bridge.store import SessionRecord, SQLiteStore  # noqa: E402
from speko_bridge.store.redis import RedisStore  # noqa: E402


def start_redis(directory: Path) -> tuple[subprocess.Popen, str]:
    port = common.free_port()
    cmd = [shutil.which("redis-server") or "/usr/bin/redis-server", "--port", str(port),
           "--bind", "127.0.0.1", "--dir", str(directory), "--save", "", "--appendonly", "yes"]
    if common.PINNED and shutil.which("taskset"):
        cmd = ["taskset", "-c", str(common.LOAD_CORE), *cmd]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.3)
    return proc, f"redis://127.0.0.1:{port}/0"


def _record(i: int, now: float) -> SessionRecord:
    params = SessionParams(provider="openai", model="gpt-realtime")
    return SessionRecord(session_id=f"sess_{i}", owner="key_bench", provider="openai",
                         model="gpt-realtime", status="pending", params=params, jti=f"jti_{i}",
                         created_at=now, token_expires_at=now + 600, ttl_seconds=600)


async def consume_latency(store, n: int) -> dict:
    await store.open()
    now = time.time()
    for i in range(n):
        await store.create(_record(i, now))
    times = []
    for i in range(n):
        t = time.perf_counter()
        result = await store.consume(f"sess_{i}", f"jti_{i}", time.time())
        times.append((time.perf_counter() - t) * 1e6)
        assert result.outcome.value == "ok"
    await store.close()
    return {"n": n, "p50_us": statistics.median(times), "p99_us": common.pct(times, 99)}


async def drain(redis_url: str, data_dir: str, n: int) -> dict:
    echo = await common.start_echo_upstream()
    bridge = await common.spawn(
        "bridge", ["-m", "speko_bridge", "serve", "--port", "{port}", "--log-level", "warning"],
        env=common.bridge_env(data_dir, f"{echo.ws_base}/v1/realtime", SPEKO_REDIS_URL=redis_url,
                              SPEKO_DRAIN_SECONDS="0"))
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            sessions = await common.mint_tokens(http, bridge.base, n, 24000)
            sockets = [await http.ws_connect(s["url"], protocols=[s["token"]]) for s in sessions]
            await asyncio.sleep(0.5)  # every session is live upstream

            async def closed(ws) -> float:
                async for _ in ws:
                    pass
                return time.perf_counter()

            waiters = [asyncio.create_task(closed(ws)) for ws in sockets]
            sent = time.perf_counter()
            bridge.proc.send_signal(signal.SIGTERM)
            ends = await asyncio.gather(*waiters)
            codes = [ws.close_code for ws in sockets]
            await bridge.proc.wait()
            exited = time.perf_counter() - sent
        store = RedisStore(redis_url)
        await store.open()
        records = [await store.get(s["sessionId"]) for s in sessions]
        await store.close()
    finally:
        await bridge.stop()
        await echo.stop()
    return {"sessions": n, "all_closed_ms": (max(ends) - sent) * 1000, "exit_ms": exited * 1000,
            "closed_1001": codes.count(1001), "exit_code": bridge.proc.returncode,
            "records_ended_1001": sum(r.status == "ended" and r.close_code == 1001 for r in records),
            "records_other": sorted({f"{r.status}/{r.close_code}/{r.close_reason}" for r in records
                                     if not (r.status == "ended" and r.close_code == 1001)})}


async def main(args) -> int:
    common.pin_self()
    smoke = args.smoke
    n_consume, mint_seconds, n_drain = (200, 1.0, 120) if smoke else (2000, 5.0, 200)
    out = Path(args.out)
    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        redis_proc, redis_url = start_redis(tmp)
        try:
            results["consume"] = {
                "sqlite": await consume_latency(SQLiteStore(tmp / "consume.db"), n_consume),
                "redis": await consume_latency(RedisStore(redis_url, prefix="bench:consume:"), n_consume),
            }
            results["mint"] = {}
            for backend, extra in (("sqlite", {}), ("redis", {"SPEKO_REDIS_URL": redis_url})):
                bridge = await common.spawn(
                    f"bridge ({backend})",
                    ["-m", "speko_bridge", "serve", "--port", "{port}", "--log-level", "warning"],
                    env=common.bridge_env(str(tmp / backend), "ws://127.0.0.1:9/unused", **extra))
                try:
                    results["mint"][backend] = await mint.run(backend, bridge.base, 16, mint_seconds)
                finally:
                    await bridge.stop()
            results["drain"] = await drain(redis_url, str(tmp / "drain"), n_drain)
        finally:
            redis_proc.terminate()
            redis_proc.wait()
    common.write_result(out, "stores", results)
    c, m, d = results["consume"], results["mint"], results["drain"]
    print("store                   sqlite          redis")
    print(f"consume p50 / p99 (us)  {c['sqlite']['p50_us']:6.0f} / {c['sqlite']['p99_us']:<6.0f} "
          f"{c['redis']['p50_us']:6.0f} / {c['redis']['p99_us']:.0f}")
    print(f"mint rps @16            {m['sqlite']['rps']:6.0f}          {m['redis']['rps']:6.0f}"
          f"   (redis/sqlite {m['redis']['rps'] / m['sqlite']['rps']:.2f})")
    print(f"mint p50 / p99 (ms)     {m['sqlite']['p50_ms']:5.2f} / {m['sqlite']['p99_ms']:<5.2f}   "
          f"{m['redis']['p50_ms']:5.2f} / {m['redis']['p99_ms']:.2f}")
    print(f"drain, {d['sessions']} live sessions, SPEKO_DRAIN_SECONDS=0: every client closed 1001 in "
          f"{d['all_closed_ms']:.0f} ms, process exited in {d['exit_ms']:.0f} ms (code {d['exit_code']}); "
          f"{d['closed_1001']}/{d['sessions']} got 1001, {d['records_ended_1001']}/{d['sessions']} records ended 1001")
    ok = d["closed_1001"] == d["records_ended_1001"] == d["sessions"] and d["exit_code"] == 0
    ok = ok and m["sqlite"]["errors"] == m["redis"]["errors"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--out", default=str(common.ROOT / "bench" / "results"))
    sys.exit(asyncio.run(main(parser.parse_args())))
