"""Prometheus metrics (``GET /metrics``), one registry per app so several apps in one
process (the tests) never collide.

Names follow Prometheus conventions (counters end in ``_total``, durations in seconds).
Labels are bounded: provider (3 values), direction (2), close code (the table of
docs/protocol.md), reason; never a session id, key or model string chosen by a caller.
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.requests import Request
from starlette.responses import Response

#: Upstream connect latency buckets: a healthy provider handshake is 100-500 ms from a cloud
#: region; 5-10 s is the connect timeout's territory.
CONNECT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.sessions_active = Gauge(
            "speko_sessions_active", "Sessions live in this process (a client socket open, or "
            "waiting for a dropped one to come back)", ["provider"], registry=r)
        self.sessions_minted = Counter(
            "speko_sessions_minted", "Sessions minted (POST /v1/sessions answered 201)", ["provider"],
            registry=r)
        self.mints_refused = Counter(
            "speko_mints_refused", "Mint requests refused for a limit or the store", ["reason"],
            registry=r)
        self.sockets_refused = Counter(
            "speko_sockets_refused", "Sockets refused before a session started, by close code",
            ["code"], registry=r)
        self.sessions_closed = Counter(
            "speko_sessions_closed", "Sessions ended, by close code", ["provider", "code"], registry=r)
        self.upstream_connect = Histogram(
            "speko_upstream_connect_seconds", "Time to open the provider WebSocket", ["provider"],
            buckets=CONNECT_BUCKETS, registry=r)
        self.frames = Counter(
            "speko_frames", "WebSocket messages between clients and the bridge",
            ["provider", "direction"], registry=r)
        self.bytes = Counter(
            "speko_bytes", "Payload bytes between clients and the bridge", ["provider", "direction"],
            registry=r)
        self.usage_tokens = Counter(
            "speko_usage_tokens", "Audio tokens reported by providers", ["provider", "kind"],
            registry=r)
        self.audio_dropped = Counter(
            "speko_audio_dropped_bytes", "Assistant audio not delivered (PCM16 bytes)",
            ["provider", "reason"], registry=r)
        self.record_writes_failed = Counter(
            "speko_record_writes_failed", "Final session record writes that failed, by outcome: "
            "'retried' (store unavailable, tried again) or 'lost' (gave up after "
            "SPEKO_RECORD_RETRY_SECONDS)", ["outcome"], registry=r)
        self.upstream_malformed = Counter(
            "speko_upstream_malformed", "Provider messages the codec could not read (skipped)",
            ["provider"], registry=r)
        self.client_invalid = Counter(
            "speko_client_messages_invalid", "Client messages that were not part of the protocol "
            "(answered with an error; the session goes on)", ["provider"], registry=r)
        self.tool_calls_refused = Counter(
            "speko_tool_calls_refused", "Provider calls of a tool the session did not declare "
            "(answered to the provider as an error, never forwarded)", ["provider"], registry=r)
        # v2 resume after a dropped client socket (docs/protocol.md "Resuming after a dropped connection")
        self.resumes_attempted = Counter(
            "speko_resumes_attempted", "Sockets offering the token of a session that is live here "
            "or in its grace window on another replica", registry=r)
        self.resumes_succeeded = Counter(
            "speko_resumes_succeeded", "Sessions taken back by a new socket within the grace window",
            registry=r)
        self.resumes_refused = Counter(
            "speko_resumes_refused", "Resume attempts refused, by error code (token_used: the "
            "session has a live socket; session_elsewhere: another replica holds it)", ["reason"],
            registry=r)
        self.sessions_ended_in_grace = Counter(
            "speko_sessions_ended_in_grace", "Sessions whose client dropped and did not come back "
            "within SPEKO_RESUME_SECONDS (recorded 1006 client_gone)", ["provider"], registry=r)
        self.draining = Gauge("speko_draining", "1 while this process drains", registry=r)
        # overload admission (speko_bridge/load.py)
        self.loop_lag = Gauge(
            "speko_event_loop_lag_seconds", "Smoothed lateness of the event loop's timers "
            "(SPEKO_OVERLOAD_LAG_MS is the limit)", registry=r)
        self.process_cpu = Gauge(
            "speko_process_cpu_ratio", "Smoothed CPU of this process, as a fraction of one core "
            "(SPEKO_OVERLOAD_CPU_PERCENT is the limit)", registry=r)
        self.overloaded = Gauge(
            "speko_overloaded", "1 while new sessions are refused for load", registry=r)
        self.overload_refusals = Counter(
            "speko_overload_refusals", "New sessions refused for load: 'socket' (4029 "
            "overloaded, token not consumed) or 'mint' (503 overloaded)", ["where"], registry=r)

    def for_session(self, provider: str) -> SessionMetrics:
        return SessionMetrics(self, provider)

    async def endpoint(self, request: Request) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


class SessionMetrics:
    """The children one session touches, bound once (a label lookup per audio frame would
    cost more than the increment).

    Message and byte counts are kept here as plain ints (``frames_in`` ... ``bytes_out``)
    and added to the shared counters by :meth:`flush`, which the session calls every second
    and when it ends: a locked counter increment per audio message was a measurable share
    of the bridge's CPU at a few hundred sessions, and /metrics is scraped every few
    seconds at best."""

    __slots__ = ("frames_in", "bytes_in", "frames_out", "bytes_out", "_counters", "active",
                 "connect", "tokens_in", "tokens_out", "dropped", "malformed", "client_invalid", "tools_refused", "_closed",
                 "_provider")

    def __init__(self, metrics: Metrics, provider: str) -> None:
        self._provider = provider
        self._closed = metrics.sessions_closed
        self.frames_in = self.bytes_in = self.frames_out = self.bytes_out = 0
        self._counters = (metrics.frames.labels(provider, "client_to_bridge"),
                          metrics.bytes.labels(provider, "client_to_bridge"),
                          metrics.frames.labels(provider, "bridge_to_client"),
                          metrics.bytes.labels(provider, "bridge_to_client"))
        self.active = metrics.sessions_active.labels(provider)
        self.connect = metrics.upstream_connect.labels(provider)
        self.tokens_in = metrics.usage_tokens.labels(provider, "input_audio")
        self.tokens_out = metrics.usage_tokens.labels(provider, "output_audio")
        self.dropped = metrics.audio_dropped.labels(provider, "interrupted")
        self.malformed = metrics.upstream_malformed.labels(provider)
        self.client_invalid = metrics.client_invalid.labels(provider)
        self.tools_refused = metrics.tool_calls_refused.labels(provider)

    def flush(self) -> None:
        """Add the message and byte counts since the last flush to the shared counters."""
        counts = (self.frames_in, self.bytes_in, self.frames_out, self.bytes_out)
        for counter, n in zip(self._counters, counts):
            if n:
                counter.inc(n)
        self.frames_in = self.bytes_in = self.frames_out = self.bytes_out = 0

    def closed(self, code: int) -> None:
        self._closed.labels(self._provider, str(code)).inc()
