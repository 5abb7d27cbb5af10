"""Redis session store: shared state for several replicas (``SPEKO_REDIS_URL``).

Layout (every key under one prefix, ``speko:`` by default):

- ``{p}s:{session_id}``  hash, the record. Created with a TTL that outlives the token window
  plus the session's ttl plus ``retention``; re-armed to ``retention`` when the session ends
  or is revoked. Nothing a live session needs can expire under it.
- ``{p}pending``          sorted set of unused sessions by token expiry, for the sweeper.
- ``{p}revocations``      pub/sub channel: a revoke publishes the session id; every replica
  listens and closes the socket if it holds it (4004).
- ``{p}mint:{key_id}``    the mint rate limiter's state (GCRA: one number per API key).
- ``{p}live:{key_id}``    sorted set of a key's live sessions, scored by lease expiry: the
  fleet-wide concurrent-session limit. Replicas renew their leases; a replica that dies
  stops renewing and its slots free themselves within ``SLOT_LEASE_SECONDS``.

Every check-and-set is one Lua script, so it is atomic on the server: of any number of
replicas consuming one token at once, exactly one sees ``ok``. The scripts touch several
keys, so the store needs one Redis primary (self-run, or a managed single-shard Redis through
its primary endpoint), not Redis Cluster.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from ..params import SessionParams
from .base import (
    SLOT_LEASE_SECONDS,
    ConsumeOutcome,
    ConsumeResult,
    SessionRecord,
    SessionStore,
    Status,
    StoreUnavailable,
    UsageTotals,
)

log = logging.getLogger("speko_bridge.store.redis")

#: How long an ended, expired or revoked record stays readable (``GET /v1/sessions/{id}``).
DEFAULT_RETENTION_SECONDS = 7 * 24 * 3600
#: Slack on top of token window + ttl before an untouched record may expire: a session that
#: is still being written when its ttl fires must find its record.
RECORD_GRACE_SECONDS = 3600
#: Network timeouts. A mint or a socket open waits at most this long on a dead Redis before
#: it is answered 503 / 1011; a healthy Redis answers in well under a millisecond.
SOCKET_TIMEOUT_SECONDS = 2.0
#: Connections per process. Each command holds one for a round trip (~0.1-0.5 ms), so 32
#: carry thousands of commands per second; one more is held by the revocation listener.
POOL_SIZE = 32
#: Backoff between attempts to resubscribe to revocations after Redis went away.
RESUBSCRIBE_BACKOFF_SECONDS = (0.1, 0.5, 1.0, 2.0)
#: Sessions expired per sweeper round trip.
SWEEP_BATCH = 500

_params_decoder = msgspec.json.Decoder(SessionParams)
_encoder = msgspec.json.Encoder()

# KEYS[1] session hash, KEYS[2] pending zset; ARGV: lifetime, session id, token expiry,
# then the hash's field/value pairs
_CREATE = """
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
redis.call('EXPIRE', KEYS[1], ARGV[1])
if ARGV[3] ~= '' then redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2]) end
return 1
"""

_CONSUME = """
local jti = redis.call('HGET', KEYS[1], 'jti')
if (not jti) or jti ~= ARGV[1] then return {'not_found'} end
local status = redis.call('HGET', KEYS[1], 'status')
local outcome = 'used'
if status == 'pending' then
  if tonumber(redis.call('HGET', KEYS[1], 'token_expires_at')) > tonumber(ARGV[2]) then
    redis.call('HSET', KEYS[1], 'status', 'active', 'started_at', ARGV[2])
    redis.call('ZREM', KEYS[2], ARGV[3])
    outcome = 'ok'
  else
    outcome = 'expired'
  end
elseif status == 'revoked' then outcome = 'revoked'
elseif status == 'expired' then outcome = 'expired'
end
local out = redis.call('HGETALL', KEYS[1])
table.insert(out, 1, outcome)
return out
"""

_REVOKE = """
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return {} end
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'pending' or status == 'active' then
  redis.call('HSET', KEYS[1], 'status', 'revoked')
  redis.call('ZREM', KEYS[2], ARGV[3])
  if status == 'active' then
    redis.call('HSET', KEYS[1], 'ended_at', ARGV[2])
    redis.call('PUBLISH', ARGV[4], ARGV[3])
  else
    redis.call('EXPIRE', KEYS[1], ARGV[5])
  end
end
return redis.call('HGETALL', KEYS[1])
"""

# KEYS[1] session hash; ARGV[1] end of the grace window. Only an active record is marked (a
# session that ended meanwhile must not look resumable, nor be re-created without a TTL).
_MARK_AWAY = """
if redis.call('HGET', KEYS[1], 'status') ~= 'active' then return 0 end
redis.call('HSET', KEYS[1], 'away_until', ARGV[1])
return 1
"""

_FINISH = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('HGET', KEYS[1], 'status') ~= 'revoked' then
  redis.call('HSET', KEYS[1], 'status', ARGV[1])
end
redis.call('HSET', KEYS[1], 'ended_at', ARGV[2], 'close_code', ARGV[3], 'close_reason', ARGV[4],
           'input_audio_tokens', ARGV[5], 'output_audio_tokens', ARGV[6])
redis.call('EXPIRE', KEYS[1], ARGV[7])
return 1
"""

_ADD_USAGE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HINCRBY', KEYS[1], 'input_audio_tokens', ARGV[1])
redis.call('HINCRBY', KEYS[1], 'output_audio_tokens', ARGV[2])
return 1
"""

# KEYS[1] pending zset; ARGV: now, batch size, session key prefix, retention
_EXPIRE_STALE = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local n = 0
for _, id in ipairs(ids) do
  local key = ARGV[3] .. id
  if redis.call('HGET', key, 'status') == 'pending' then
    redis.call('HSET', key, 'status', 'expired')
    redis.call('EXPIRE', key, ARGV[4])
    n = n + 1
  end
  redis.call('ZREM', KEYS[1], id)
end
return {n, #ids}
"""

# GCRA (the generic cell rate algorithm): one stored number, the theoretical arrival time.
# KEYS[1] limiter key; ARGV: now, emission interval (s), burst. Returns 0 or the wait in ms.
_TAKE_MINT = """
local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local new_tat = tat + interval
local wait = new_tat - now - burst * interval
if wait > 0 then return math.ceil(wait * 1000) end
redis.call('SET', KEYS[1], tostring(new_tat), 'PX', math.ceil((new_tat - now) * 1000) + 1000)
return 0
"""

# KEYS[1] the key's live set; ARGV: now, limit, session id, lease seconds
_ACQUIRE_SLOT = """
local now = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if not redis.call('ZSCORE', KEYS[1], ARGV[3]) then
  if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[4]), ARGV[3])
redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[4])) * 2)
return 1
"""


def _record(fields: dict[str, str], now: float | None = None) -> SessionRecord:
    def opt_float(name: str) -> float | None:
        value = fields.get(name)
        return None if value in (None, "") else float(value)

    status = fields["status"]
    token_expires_at = float(fields["token_expires_at"])
    if status == "pending" and now is not None and token_expires_at <= now:
        status = "expired"
    code = fields.get("close_code")
    return SessionRecord(
        session_id=fields["session_id"],
        owner=fields["owner"],
        provider=fields["provider"],
        model=fields["model"],
        status=status,
        params=_params_decoder.decode(fields["params"]),
        jti=fields["jti"],
        created_at=float(fields["created_at"]),
        token_expires_at=token_expires_at,
        ttl_seconds=int(fields["ttl_seconds"]),
        started_at=opt_float("started_at"),
        ended_at=opt_float("ended_at"),
        close_code=None if code in (None, "") else int(code),
        close_reason=fields.get("close_reason"),
        usage=UsageTotals(
            int(fields.get("input_audio_tokens", 0)), int(fields.get("output_audio_tokens", 0))
        ),
    )


def _pairs(flat: list[str]) -> dict[str, str]:
    return dict(zip(flat[0::2], flat[1::2]))


class RedisStore(SessionStore):
    def __init__(
        self,
        url: str,
        *,
        prefix: str = "speko:",
        retention_seconds: int = DEFAULT_RETENTION_SECONDS,
        socket_timeout: float = SOCKET_TIMEOUT_SECONDS,
    ) -> None:
        super().__init__()
        self.url = url
        self.prefix = prefix
        self.retention_seconds = retention_seconds
        self.channel = f"{prefix}revocations"
        self._pending_key = f"{prefix}pending"
        self._socket_timeout = socket_timeout
        self._redis: aioredis.Redis | None = None
        self._scripts: dict[str, Any] = {}

    def _key(self, session_id: str) -> str:
        return f"{self.prefix}s:{session_id}"

    @property
    def redis(self) -> aioredis.Redis:
        if self._redis is None:
            raise StoreUnavailable("store is closed")
        return self._redis

    async def _call(self, awaitable: Awaitable[Any]) -> Any:
        try:
            return await awaitable
        except RedisError as exc:
            raise StoreUnavailable(f"redis: {exc}") from exc
        except OSError as exc:
            raise StoreUnavailable(f"redis: {exc}") from exc

    async def _script(self, name: str, keys: list[str], args: list[Any]) -> Any:
        return await self._call(self._scripts[name](keys=keys, args=args))

    # -- lifecycle -----------------------------------------------------------------------

    async def open(self) -> None:
        if self._redis is None:
            # A bounded pool that queues callers: a burst (every session of a draining
            # replica writing its record at once) waits for a connection instead of failing.
            pool = aioredis.BlockingConnectionPool.from_url(
                self.url,
                max_connections=POOL_SIZE,
                timeout=self._socket_timeout,
                decode_responses=True,
                socket_timeout=self._socket_timeout,
                socket_connect_timeout=self._socket_timeout,
                health_check_interval=30,
            )
            self._redis = aioredis.Redis(connection_pool=pool)
            for name, source in (
                ("create", _CREATE), ("consume", _CONSUME), ("revoke", _REVOKE), ("finish", _FINISH),
                ("add_usage", _ADD_USAGE), ("expire_stale", _EXPIRE_STALE),
                ("take_mint", _TAKE_MINT), ("acquire_slot", _ACQUIRE_SLOT),
                ("mark_away", _MARK_AWAY),
            ):
                self._scripts[name] = self._redis.register_script(source)
        await self.ping()

    async def close(self) -> None:
        client, self._redis = self._redis, None
        if client is not None:
            await client.aclose()
            await client.connection_pool.disconnect()

    async def ping(self) -> None:
        await self._call(self.redis.ping())

    # -- records -------------------------------------------------------------------------

    async def create(self, record: SessionRecord) -> None:
        fields = {
            "session_id": record.session_id, "owner": record.owner, "provider": record.provider,
            "model": record.model, "status": record.status,
            "params": _encoder.encode(record.params).decode(), "jti": record.jti,
            "created_at": repr(record.created_at),
            "token_expires_at": repr(record.token_expires_at),
            "ttl_seconds": record.ttl_seconds,
            "input_audio_tokens": record.usage.input_audio_tokens,
            "output_audio_tokens": record.usage.output_audio_tokens,
        }
        # a record is stored whole, like SQLite does (absent fields read back as None)
        for name in ("started_at", "ended_at", "close_code", "close_reason"):
            value = getattr(record, name)
            if value is not None:
                fields[name] = repr(value) if isinstance(value, float) else value
        lifetime = (
            max(0, int(record.token_expires_at - record.created_at)) + record.ttl_seconds
            + RECORD_GRACE_SECONDS + self.retention_seconds
        )
        pending = repr(record.token_expires_at) if record.status == "pending" else ""
        args: list[Any] = [lifetime, record.session_id, pending]
        for name, value in fields.items():
            args += (name, value)
        # one script, one round trip: the record, its expiry and its sweep entry together
        await self._script("create", [self._key(record.session_id), self._pending_key], args)

    async def get(self, session_id: str, owner: str | None = None) -> SessionRecord | None:
        fields = await self._call(self.redis.hgetall(self._key(session_id)))
        if not fields or (owner is not None and fields.get("owner") != owner):
            return None
        return _record(fields, now=time.time())

    async def consume(self, session_id: str, jti: str, now: float) -> ConsumeResult:
        out = await self._script(
            "consume", [self._key(session_id), self._pending_key], [jti, repr(now), session_id]
        )
        outcome = ConsumeOutcome(out[0])
        if outcome is ConsumeOutcome.NOT_FOUND:
            return ConsumeResult(outcome)
        return ConsumeResult(outcome, _record(_pairs(out[1:]), now=None if outcome is ConsumeOutcome.OK else now))

    async def revoke(self, session_id: str, owner: str, now: float) -> SessionRecord | None:
        out = await self._script(
            "revoke", [self._key(session_id), self._pending_key],
            [owner, repr(now), session_id, self.channel, self.retention_seconds],
        )
        return _record(_pairs(out), now=now) if out else None

    async def finish(
        self,
        session_id: str,
        *,
        status: Status,
        close_code: int,
        close_reason: str,
        usage: UsageTotals,
        now: float,
    ) -> None:
        await self._script(
            "finish", [self._key(session_id)],
            [status, repr(now), close_code, close_reason, usage.input_audio_tokens,
             usage.output_audio_tokens, self.retention_seconds],
        )

    async def add_usage(self, session_id: str, usage: UsageTotals) -> None:
        await self._script(
            "add_usage", [self._key(session_id)],
            [usage.input_audio_tokens, usage.output_audio_tokens],
        )

    async def expire_stale(self, now: float) -> int:
        total = 0
        while True:
            expired, seen = await self._script(
                "expire_stale", [self._pending_key],
                [repr(now), SWEEP_BATCH, f"{self.prefix}s:", self.retention_seconds],
            )
            total += int(expired)
            if int(seen) < SWEEP_BATCH:
                return total

    # -- resume after a dropped client socket: in the record, so every replica sees it -----

    async def mark_away(self, session_id: str, until: float) -> None:
        await self._script("mark_away", [self._key(session_id)], [repr(until)])

    async def mark_back(self, session_id: str) -> None:
        await self._call(self.redis.hdel(self._key(session_id), "away_until"))

    async def away_until(self, session_id: str, now: float) -> float | None:
        status, until = await self._call(self.redis.hmget(self._key(session_id), "status", "away_until"))
        if status != "active" or until in (None, "") or float(until) <= now:
            return None
        return float(until)

    # -- fleet-wide limits ---------------------------------------------------------------

    async def take_mint(self, owner: str, per_minute: int, burst: int, now: float) -> float:
        wait_ms = await self._script(
            "take_mint", [f"{self.prefix}mint:{owner}"], [repr(now), 60.0 / per_minute, burst]
        )
        return int(wait_ms) / 1000

    async def acquire_slot(self, owner: str, session_id: str, limit: int, now: float) -> bool:
        won = await self._script(
            "acquire_slot", [f"{self.prefix}live:{owner}"],
            [repr(now), limit, session_id, SLOT_LEASE_SECONDS],
        )
        return bool(won)

    async def release_slot(self, owner: str, session_id: str) -> None:
        await self._call(self.redis.zrem(f"{self.prefix}live:{owner}", session_id))

    async def renew_slots(self, slots: Iterable[tuple[str, str]], now: float) -> None:
        pipe = self.redis.pipeline(transaction=False)
        for owner, session_id in slots:
            pipe.zadd(f"{self.prefix}live:{owner}", {session_id: now + SLOT_LEASE_SECONDS}, xx=True)
        await self._call(pipe.execute())

    async def revoked_among(self, session_ids: Iterable[str]) -> list[str]:
        ids = list(session_ids)
        if not ids:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for session_id in ids:
            pipe.hget(self._key(session_id), "status")
        statuses = await self._call(pipe.execute())
        return [sid for sid, status in zip(ids, statuses) if status == "revoked"]

    # -- revocation fan-out --------------------------------------------------------------

    async def watch_revocations(self, on_revoke: Callable[[str], object]) -> None:
        """Call ``on_revoke(session_id)`` for every revoke published by any replica, until
        cancelled. Resubscribes after Redis comes back; revokes published while it was away
        are caught by :meth:`revoked_among` (the app's lease renewal asks every few s)."""
        attempt = 0
        while True:
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                attempt = 0
                while True:
                    message = await pubsub.get_message(timeout=None)
                    if message is not None and message.get("type") == "message":
                        on_revoke(message["data"])
            except (RedisError, OSError) as exc:
                delay = RESUBSCRIBE_BACKOFF_SECONDS[min(attempt, len(RESUBSCRIBE_BACKOFF_SECONDS) - 1)]
                attempt += 1
                if attempt == 1:
                    log.warning("revocation channel lost, resubscribing: %s", exc)
                await asyncio.sleep(delay)
            finally:
                try:
                    await pubsub.aclose()
                except (RedisError, OSError):
                    pass
