"""SQLite session store: the embedded default, one file, WAL mode.

All calls run on one dedicated thread that owns the connection, so the event loop never
blocks on disk and SQLite sees a single writer (which is what it is best at). The store
is touched at mint, connect, once per model response (usage) and at the end of a
session: never per audio frame.

Single use is one statement: ``UPDATE ... WHERE jti = ? AND status = 'pending' AND
token_expires_at > ? RETURNING ...``. Either it changed the row (this caller won) or it
did not (someone else did, or the token is dead); there is no check-then-set window.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, TypeVar

import msgspec

from ..params import SessionParams
from .base import (
    ConsumeOutcome,
    ConsumeResult,
    SessionRecord,
    SessionStore,
    Status,
    StoreUnavailable,
    UsageTotals,
)

T = TypeVar("T")

#: Each entry upgrades the schema by one version (``PRAGMA user_version``). Append only.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE sessions (
        session_id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        provider TEXT NOT NULL,
        model TEXT NOT NULL,
        status TEXT NOT NULL,
        params BLOB NOT NULL,
        jti TEXT NOT NULL UNIQUE,
        created_at REAL NOT NULL,
        token_expires_at REAL NOT NULL,
        ttl_seconds INTEGER NOT NULL,
        started_at REAL,
        ended_at REAL,
        close_code INTEGER,
        close_reason TEXT,
        input_audio_tokens INTEGER NOT NULL DEFAULT 0,
        output_audio_tokens INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX sessions_pending ON sessions (token_expires_at) WHERE status = 'pending';
    """,
    # retention: the sweep deletes by token expiry (see SQLiteStore.delete_old)
    """
    CREATE INDEX sessions_token_expiry ON sessions (token_expires_at);
    """,
    # resume: the end of an active session's grace window while its client is away (v2)
    """
    ALTER TABLE sessions ADD COLUMN away_until REAL;
    """,
]

COLUMNS = (
    "session_id, owner, provider, model, status, params, jti, created_at, token_expires_at, "
    "ttl_seconds, started_at, ended_at, close_code, close_reason, input_audio_tokens, "
    "output_audio_tokens"
)
#: How long a statement waits for a lock held by another process before the store is
#: declared unavailable (503). Long enough to ride out a checkpoint, short enough that a
#: minting backend gets an answer well within a typical 10-30 s HTTP client timeout.
DEFAULT_BUSY_TIMEOUT_MS = 5000
#: How long a record stays after the latest moment its session could have ended
#: (``SPEKO_RECORD_RETENTION_SECONDS``, the Redis store's setting and default).
DEFAULT_RETENTION_SECONDS = 7 * 24 * 3600
#: Slack after token window + ttl before a record may go, as the Redis store's key TTL has:
#: a session still writing its final record when its ttl fires must find it.
RECORD_GRACE_SECONDS = 3600
#: Records deleted per transaction, so a sweep never holds the write lock for long.
DELETE_BATCH = 2000
#: The database holds system prompts, tools and metadata: owner only (its WAL and
#: shared-memory files inherit the mode from it), in a directory only the owner can list.
DB_FILE_MODE = 0o600
DATA_DIR_MODE = 0o700

_params_decoder = msgspec.json.Decoder(SessionParams)
_encoder = msgspec.json.Encoder()


def _row_to_record(row: tuple[Any, ...], now: float | None = None) -> SessionRecord:
    (sid, owner, provider, model, status, params, jti, created, token_exp, ttl, started, ended,
     code, reason, in_tokens, out_tokens) = row
    if status == "pending" and now is not None and token_exp <= now:
        status = "expired"
    return SessionRecord(
        session_id=sid,
        owner=owner,
        provider=provider,
        model=model,
        status=status,
        params=_params_decoder.decode(params),
        jti=jti,
        created_at=created,
        token_expires_at=token_exp,
        ttl_seconds=ttl,
        started_at=started,
        ended_at=ended,
        close_code=code,
        close_reason=reason,
        usage=UsageTotals(in_tokens, out_tokens),
    )


_INSERT = f"INSERT INTO sessions ({COLUMNS}) VALUES ({', '.join('?' * 16)})"

class SQLiteFile:
    """The database file and the one thread that touches it: connection, migrations, open,
    close, ping. Every call runs on that thread (:meth:`_run`), so the event loop never
    blocks on SQLite. :class:`SQLiteStore` sets the attributes (``path``, ``busy_timeout_ms``,
    ``_executor``, ``_conn``) and adds the records on top."""

    path: Path
    busy_timeout_ms: int
    _executor: ThreadPoolExecutor | None
    _conn: sqlite3.Connection | None

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._executor is None:
            raise StoreUnavailable("store is closed")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, self._call, fn)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"sqlite: {exc}") from exc

    def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._conn is None:
            self._conn = self._connect()
        try:
            return fn(self._conn)
        except sqlite3.Error:
            if self._conn.in_transaction:
                self._conn.rollback()
            raise

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(mode=DATA_DIR_MODE, parents=True, exist_ok=True)
        try:  # create it owner-only before SQLite would create it with the umask (0644)
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, DB_FILE_MODE))
        except FileExistsError:
            pass
        conn = sqlite3.connect(
            self.path, timeout=self.busy_timeout_ms / 1000, isolation_level=None, check_same_thread=False
        )
        conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
        conn.execute("PRAGMA journal_mode = WAL")
        # NORMAL is durable across application crashes in WAL mode; only an OS crash can
        # lose the last commits, which for short-lived session records is acceptable.
        conn.execute("PRAGMA synchronous = NORMAL")
        self._migrate(conn)
        return conn

    @staticmethod
    def _migrate(conn: sqlite3.Connection) -> None:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            raise sqlite3.DatabaseError(
                f"database schema version {version} is newer than this code ({len(MIGRATIONS)})"
            )
        for target, script in enumerate(MIGRATIONS[version:], start=version + 1):
            conn.execute("BEGIN IMMEDIATE")
            for statement in filter(str.strip, script.split(";")):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {target}")
            conn.execute("COMMIT")

    async def open(self) -> None:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="speko-sqlite")
        await self._run(lambda conn: None)

    async def close(self) -> None:
        executor, self._executor = self._executor, None
        if executor is None:
            return

        def _close() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        await asyncio.get_running_loop().run_in_executor(executor, _close)
        executor.shutdown(wait=True)

    async def ping(self) -> None:
        def _ping(conn: sqlite3.Connection) -> None:
            # Taking the write lock proves the store can accept a mint, not only reads.
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")

        await self._run(_ping)


class SQLiteStore(SQLiteFile, SessionStore):
    def __init__(
        self,
        path: str | Path,
        *,
        busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
        retention_seconds: int = DEFAULT_RETENTION_SECONDS,
    ) -> None:
        super().__init__()
        self.path = Path(path)
        self.busy_timeout_ms = busy_timeout_ms
        self.retention_seconds = retention_seconds
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None
        # group commit: creates waiting for the next batch, and whether one is in flight
        self._pending: list[tuple[tuple, asyncio.Future]] = []
        self._batch_running = False
        self._batch_task: asyncio.Future | None = None

    async def create(self, record: SessionRecord) -> None:
        """Insert a new record; returns once it is committed.

        Group commit: creates that arrive while a batch is being written wait for the next
        batch, which commits them all in one transaction (one thread hop, one WAL write).
        A lone mint pays nothing extra; 16 concurrent mints share one commit. If a batch
        fails, its rows are retried one by one so each caller gets its own outcome."""
        values = (
            record.session_id, record.owner, record.provider, record.model, record.status,
            _encoder.encode(record.params), record.jti, record.created_at,
            record.token_expires_at, record.ttl_seconds, record.started_at, record.ended_at,
            record.close_code, record.close_reason, record.usage.input_audio_tokens,
            record.usage.output_audio_tokens,
        )
        future = asyncio.get_running_loop().create_future()
        self._pending.append((values, future))
        if not self._batch_running:
            self._batch_running = True
            self._batch_task = asyncio.ensure_future(self._write_batches())
        await future

    async def _write_batches(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    await self._run(lambda conn: self._insert_many(conn, [v for v, _ in batch]))
                except Exception:  # one bad row must not fail its neighbours
                    for values, future in batch:
                        try:
                            await self._run(lambda conn, v=values: conn.execute(_INSERT, v))
                        except Exception as exc:
                            if not future.done():
                                future.set_exception(exc)
                        else:
                            if not future.done():
                                future.set_result(None)
                    continue
                for _, future in batch:
                    if not future.done():
                        future.set_result(None)
        finally:
            self._batch_running = False

    @staticmethod
    def _insert_many(conn: sqlite3.Connection, rows: list[tuple]) -> None:
        if len(rows) == 1:
            conn.execute(_INSERT, rows[0])
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(_INSERT, rows)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    async def get(self, session_id: str, owner: str | None = None) -> SessionRecord | None:
        def _get(conn: sqlite3.Connection) -> tuple | None:
            return conn.execute(
                f"SELECT {COLUMNS} FROM sessions WHERE session_id = ?", (session_id,)
            ).fetchone()

        row = await self._run(_get)
        if row is None or (owner is not None and row[1] != owner):
            return None
        return _row_to_record(row, now=time.time())

    async def consume(self, session_id: str, jti: str, now: float) -> ConsumeResult:
        def _consume(conn: sqlite3.Connection) -> tuple[bool, tuple | None]:
            row = conn.execute(
                f"UPDATE sessions SET status = 'active', started_at = ? "
                f"WHERE session_id = ? AND jti = ? AND status = 'pending' AND token_expires_at > ? "
                f"RETURNING {COLUMNS}",
                (now, session_id, jti, now),
            ).fetchone()
            if row is not None:
                return True, row
            return False, conn.execute(
                f"SELECT {COLUMNS} FROM sessions WHERE session_id = ?", (session_id,)
            ).fetchone()

        won, row = await self._run(_consume)
        if won:
            return ConsumeResult(ConsumeOutcome.OK, _row_to_record(row))
        if row is None or row[6] != jti:
            return ConsumeResult(ConsumeOutcome.NOT_FOUND)
        record = _row_to_record(row, now=now)
        outcome = {
            "revoked": ConsumeOutcome.REVOKED,
            "expired": ConsumeOutcome.EXPIRED,
            "pending": ConsumeOutcome.EXPIRED,  # pending but past its window
        }.get(record.status, ConsumeOutcome.USED)
        return ConsumeResult(outcome, record)

    async def revoke(self, session_id: str, owner: str, now: float) -> SessionRecord | None:
        def _revoke(conn: sqlite3.Connection) -> tuple | None:
            conn.execute(
                "UPDATE sessions SET status = 'revoked', "
                "ended_at = CASE WHEN status = 'active' THEN ? ELSE ended_at END "
                "WHERE session_id = ? AND owner = ? AND status IN ('pending', 'active')",
                (now, session_id, owner),
            )
            return conn.execute(
                f"SELECT {COLUMNS} FROM sessions WHERE session_id = ? AND owner = ?",
                (session_id, owner),
            ).fetchone()

        row = await self._run(_revoke)
        return None if row is None else _row_to_record(row, now=now)

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
        await self._run(
            lambda conn: conn.execute(
                "UPDATE sessions SET "
                "status = CASE WHEN status = 'revoked' THEN 'revoked' ELSE ? END, "
                "ended_at = ?, close_code = ?, close_reason = ?, "
                "input_audio_tokens = ?, output_audio_tokens = ? WHERE session_id = ?",
                (status, now, close_code, close_reason, usage.input_audio_tokens,
                 usage.output_audio_tokens, session_id),
            )
        )

    async def add_usage(self, session_id: str, usage: UsageTotals) -> None:
        await self._run(
            lambda conn: conn.execute(
                "UPDATE sessions SET input_audio_tokens = input_audio_tokens + ?, "
                "output_audio_tokens = output_audio_tokens + ? WHERE session_id = ?",
                (usage.input_audio_tokens, usage.output_audio_tokens, session_id),
            )
        )

    async def expire_stale(self, now: float) -> int:
        return await self._run(
            lambda conn: conn.execute(
                "UPDATE sessions SET status = 'expired' "
                "WHERE status = 'pending' AND token_expires_at <= ?",
                (now,),
            ).rowcount
        )

    async def delete_old(self, now: float) -> int:
        """Delete records whose retention has passed: ``retention_seconds`` after the latest
        moment the session could have ended (token expiry + ttl + grace), whatever its status,
        which is when the Redis store's key would expire. Never touches a session that can
        still be live."""
        cutoff = now - self.retention_seconds - RECORD_GRACE_SECONDS

        def _delete(conn: sqlite3.Connection) -> int:
            return conn.execute(
                "DELETE FROM sessions WHERE rowid IN (SELECT rowid FROM sessions "
                "WHERE token_expires_at < ? AND token_expires_at + ttl_seconds < ? LIMIT ?)",
                (cutoff, cutoff, DELETE_BATCH),
            ).rowcount

        total = 0
        while True:
            deleted = await self._run(_delete)
            total += deleted
            if deleted < DELETE_BATCH:
                return total

    # -- resume after a dropped client socket: in the file, so every process sharing it sees it

    async def mark_away(self, session_id: str, until: float) -> None:
        await self._run(lambda conn: conn.execute(
            "UPDATE sessions SET away_until = ? WHERE session_id = ? AND status = 'active'",
            (until, session_id)))

    async def mark_back(self, session_id: str) -> None:
        await self._run(lambda conn: conn.execute(
            "UPDATE sessions SET away_until = NULL WHERE session_id = ?", (session_id,)))

    async def away_until(self, session_id: str, now: float) -> float | None:
        row = await self._run(lambda conn: conn.execute(
            "SELECT away_until FROM sessions WHERE session_id = ? AND status = 'active' "
            "AND away_until > ?", (session_id, now)).fetchone())
        return None if row is None else row[0]
