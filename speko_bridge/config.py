"""Settings, read from environment variables once at start and validated.

A bad value stops the server with one line naming the variable (:class:`ConfigError`).
Nothing else in the package reads ``os.environ``: ``create_app(settings)`` gets everything
it needs from a :class:`Settings`.

Dev defaults (``make run``): when ``SPEKO_API_KEYS`` or ``SPEKO_SIGNING_KEY`` is unset, a key
is generated once and kept in ``SPEKO_DATA_DIR`` (``.speko/`` by default) so that tokens and
the printed dev API key survive a restart, the way Jupyter keeps its token.
"""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from .models import ANY_MODEL, KNOWN_MODELS, env_var
from .tokens import ApiKeyring, SigningKeys

#: HS256 keys shorter than this are refused (RFC 7518 3.2: key >= hash output size).
MIN_SIGNING_KEY_BYTES = 32
#: Largest token window (the time a browser has to open the socket) we allow configuring.
MAX_TOKEN_WINDOW_SECONDS = 600
#: Mints per minute per API key when ``SPEKO_MINT_RATE_PER_MINUTE`` is unset (0 turns the
#: limit off). 10 new conversations a second, sustained, with a burst of a minute's worth
#: (600 at once) is more than one backend's key needs; a leaked key minting flat out (600+
#: a second) is held to it, and so is the store's growth.
DEFAULT_MINT_RATE_PER_MINUTE = 600
#: Smoothed event-loop lag at which new sessions are refused (speko_bridge/load.py). Chosen
#: with bench/overload.py (docs/configuration.md, "Overload"): below it the admitted
#: sessions' p99 is still near its unloaded value.
DEFAULT_OVERLOAD_LAG_MS = 10.0
#: Smoothed process CPU, in % of one core, at which new sessions are refused: the event
#: loop runs on one core, and queueing delay grows for every session at once well before
#: it is full. bench/overload.py, 100 sessions streaming and 100 more offered, the first
#: sessions' p99 during the offer over before (docs/configuration.md, "Overload"): at 85%
#: 12-24x; at 70% a median of 3.8x over six runs (1.2-16x); at 60% a median of 1.8x over
#: five (1.0-6.1x), admitting ~35 of the 100 where 70% admitted ~70.
DEFAULT_OVERLOAD_CPU_PERCENT = 60.0
#: Highest lag limit accepted: a limit of seconds is no limit for a live audio session.
MAX_OVERLOAD_LAG_MS = 10_000.0
#: Highest CPU limit: threads (SQLite, soxr) can take a process past one core, never past
#: what a large machine could give it.
MAX_OVERLOAD_CPU_PERCENT = 6400.0


class ConfigError(ValueError):
    """One bad setting; ``str()`` is the single line printed before exiting."""

    def __init__(self, variable: str, message: str) -> None:
        super().__init__(f"{variable}: {message}")
        self.variable = variable


@dataclass(frozen=True)
class ProviderEndpoint:
    url: str
    api_key: str | None


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    db_path: Path
    api_keys: ApiKeyring
    signing: SigningKeys
    public_url: str  # ws(s)://host[:port] of the bridge as browsers reach it
    allowed_origins: frozenset[str] | None
    token_window_seconds: int = 60
    issuer: str = "speko-bridge"
    audience: str = "speko-bridge/realtime"
    dev: bool = False
    dev_api_key: str | None = None  # the generated key, only to print it at start
    simulate: bool = False  # serve providers without a key from the built-in simulators
    providers: dict[str, ProviderEndpoint] = field(default_factory=dict)
    upstream_connect_timeout: float = 10.0
    upstream_read_timeout: float = 20.0  # silence allowed while a reply is due
    client_send_timeout: float = 10.0  # how long a client may leave the outbox full
    audio_burst_seconds: float = 10.0  # how far ahead of real time a client's audio may be read
    client_messages_per_second: float = 500.0  # client messages read per second, at most
    record_retry_seconds: float = 30.0  # how long a session's final record write is retried
    max_sessions: int = 10_000
    db_busy_timeout_ms: int = 5000
    redis_url: str | None = None  # set: records and limits live in Redis, shared by replicas
    redis_prefix: str = "speko:"
    record_retention_seconds: int = 7 * 24 * 3600
    drain_seconds: float = 30.0
    #: How long a session whose client dropped without a close handshake waits for the same
    #: token to come back (``SPEKO_RESUME_SECONDS``); 0 ends such a session at once.
    resume_seconds: float = 15.0
    mint_rate_per_minute: int = DEFAULT_MINT_RATE_PER_MINUTE  # per API key, fleet-wide; 0 = none
    mint_burst: int = DEFAULT_MINT_RATE_PER_MINUTE  # mints allowed at once before the rate applies
    max_sessions_per_key: int = 0  # concurrent sessions per API key, across the fleet; 0 = none
    #: New sessions are refused while the smoothed event-loop lag is over this (0 = not used).
    overload_lag_ms: float = DEFAULT_OVERLOAD_LAG_MS
    #: ... or while the smoothed process CPU is over this, in % of one core (0 = not used).
    overload_cpu_percent: float = DEFAULT_OVERLOAD_CPU_PERCENT
    log_format: str = "json"
    #: provider -> the model ids a mint may name (``*`` allows any); see models.py.
    models: dict[str, tuple[str, ...]] = field(default_factory=lambda: dict(KNOWN_MODELS))

    @property
    def realtime_url(self) -> str:
        return self.public_url.rstrip("/") + "/v1/realtime"


DEFAULT_PROVIDER_URLS = {
    "openai": "wss://api.openai.com/v1/realtime",
    "google": (
        "wss://generativelanguage.googleapis.com/ws/"
        "google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"
    ),
    "xai": "wss://api.x.ai/v1/realtime",
}
PROVIDER_KEY_VARS = {"openai": "OPENAI_API_KEY", "google": "GOOGLE_API_KEY", "xai": "XAI_API_KEY"}
PROVIDER_URL_VARS = {"openai": "SPEKO_OPENAI_URL", "google": "SPEKO_GOOGLE_URL", "xai": "SPEKO_XAI_URL"}
PROVIDER_MODELS_VARS = {name: env_var(name) for name in DEFAULT_PROVIDER_URLS}
#: Longest model id a catalogue entry may be (SessionParams.model allows 128).
MAX_MODEL_ID_CHARS = 128


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ConfigError(name, f"expected true/false, got {raw!r}")


def _int(env: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(name, f"expected an integer, got {raw!r}") from None
    if not lo <= value <= hi:
        raise ConfigError(name, f"must be between {lo} and {hi}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, lo: float, hi: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(name, f"expected a number, got {raw!r}") from None
    if not lo <= value <= hi:
        raise ConfigError(name, f"must be between {lo} and {hi}, got {value}")
    return value


def _list(env: Mapping[str, str], name: str) -> list[str]:
    return [item.strip() for item in env.get(name, "").split(",") if item.strip()]


def _secret_file(path: Path, make: Callable[[], str]) -> str:
    """Read a generated secret, creating it (mode 0600) on first use."""
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # owner only, as the key
    value = make()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, stat.S_IRUSR | stat.S_IWUSR)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
    return value


def _ws_base(url: str, variable: str) -> str:
    parts = urlsplit(url)
    scheme = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}.get(parts.scheme)
    if scheme is None or not parts.netloc:
        raise ConfigError(variable, f"expected an http(s) or ws(s) URL, got {url!r}")
    return f"{scheme}://{parts.netloc}{parts.path.rstrip('/')}"


def load_settings(
    env: Mapping[str, str] | None = None, *, host: str = "127.0.0.1", port: int = 8000
) -> Settings:
    """Build :class:`Settings` from ``env`` (default ``os.environ``); raise :class:`ConfigError`."""
    env = os.environ if env is None else env
    data_dir = Path(env.get("SPEKO_DATA_DIR") or ".speko")
    db_path = Path(env.get("SPEKO_DB_PATH") or data_dir / "speko.db")

    dev = _bool(env, "SPEKO_DEV", default=False)
    dev_api_key = None
    keys = _list(env, "SPEKO_API_KEYS")
    if not keys:
        if not dev:
            raise ConfigError("SPEKO_API_KEYS", "required (or SPEKO_DEV=1 for a generated dev key)")
        dev_api_key = _secret_file(data_dir / "dev_api_key", lambda: "sk_dev_" + secrets.token_urlsafe(24))
        keys = [dev_api_key]
    try:
        api_keys = ApiKeyring.from_config(keys)
    except ValueError as exc:
        raise ConfigError("SPEKO_API_KEYS", str(exc)) from None

    signing_key = env.get("SPEKO_SIGNING_KEY")
    if not signing_key:
        if not dev:
            raise ConfigError("SPEKO_SIGNING_KEY", "required (or SPEKO_DEV=1 for a generated key)")
        signing_key = _secret_file(data_dir / "signing_key", lambda: secrets.token_urlsafe(48))
    if len(signing_key.encode()) < MIN_SIGNING_KEY_BYTES:
        raise ConfigError(
            "SPEKO_SIGNING_KEY", f"must be at least {MIN_SIGNING_KEY_BYTES} bytes for HS256"
        )
    previous = _list(env, "SPEKO_SIGNING_KEYS_PREVIOUS")
    for key in previous:
        if len(key.encode()) < MIN_SIGNING_KEY_BYTES:
            raise ConfigError(
                "SPEKO_SIGNING_KEYS_PREVIOUS",
                f"every key must be at least {MIN_SIGNING_KEY_BYTES} bytes for HS256",
            )
    signing = SigningKeys(signing_key, previous)

    public_url = _ws_base(env.get("SPEKO_PUBLIC_URL") or f"http://{host}:{port}", "SPEKO_PUBLIC_URL")
    origins = _list(env, "SPEKO_ALLOWED_ORIGINS")

    simulate = _bool(env, "SPEKO_SIMULATE", default=dev)
    providers: dict[str, ProviderEndpoint] = {}
    for name, default_url in DEFAULT_PROVIDER_URLS.items():
        url_var = PROVIDER_URL_VARS[name]
        url = env.get(url_var) or default_url
        if urlsplit(url).scheme not in ("ws", "wss") or not urlsplit(url).netloc:
            raise ConfigError(url_var, f"expected a ws:// or wss:// URL, got {url!r}")
        providers[name] = ProviderEndpoint(url=url, api_key=env.get(PROVIDER_KEY_VARS[name]) or None)

    models: dict[str, tuple[str, ...]] = {}
    for name, var in PROVIDER_MODELS_VARS.items():
        listed = _list(env, var)
        for model in listed:
            if len(model) > MAX_MODEL_ID_CHARS or any(c.isspace() for c in model):
                raise ConfigError(var, f"not a model id: {model!r}")
        if ANY_MODEL in listed and len(listed) > 1:
            raise ConfigError(var, f"{ANY_MODEL!r} allows any model; list it alone")
        models[name] = tuple(listed) if listed else KNOWN_MODELS[name]

    redis_url = env.get("SPEKO_REDIS_URL") or None
    if redis_url is not None and urlsplit(redis_url).scheme not in ("redis", "rediss", "unix"):
        raise ConfigError("SPEKO_REDIS_URL", f"expected a redis://, rediss:// or unix:// URL, got {redis_url!r}")
    mint_rate = _int(env, "SPEKO_MINT_RATE_PER_MINUTE", DEFAULT_MINT_RATE_PER_MINUTE, 0, 1_000_000)
    log_format = (env.get("SPEKO_LOG_FORMAT") or ("text" if dev else "json")).strip().lower()
    if log_format not in ("json", "text"):
        raise ConfigError("SPEKO_LOG_FORMAT", f"expected json or text, got {log_format!r}")

    return Settings(
        data_dir=data_dir,
        db_path=db_path,
        api_keys=api_keys,
        signing=signing,
        public_url=public_url,
        allowed_origins=frozenset(origins) if origins else None,
        token_window_seconds=_int(
            env, "SPEKO_TOKEN_WINDOW_SECONDS", 60, 1, MAX_TOKEN_WINDOW_SECONDS
        ),
        issuer=env.get("SPEKO_ISSUER") or "speko-bridge",
        audience=env.get("SPEKO_AUDIENCE") or "speko-bridge/realtime",
        dev=dev,
        dev_api_key=dev_api_key,
        simulate=simulate,
        providers=providers,
        upstream_connect_timeout=_float(env, "SPEKO_UPSTREAM_CONNECT_TIMEOUT", 10.0, 0.1, 120.0),
        upstream_read_timeout=_float(env, "SPEKO_UPSTREAM_READ_TIMEOUT", 20.0, 0.1, 600.0),
        client_send_timeout=_float(env, "SPEKO_CLIENT_SEND_TIMEOUT", 10.0, 0.1, 600.0),
        audio_burst_seconds=_float(env, "SPEKO_AUDIO_BURST_SECONDS", 10.0, 0.0, 3600.0),
        client_messages_per_second=_float(env, "SPEKO_CLIENT_MESSAGES_PER_SECOND", 500.0, 1.0, 1_000_000.0),
        record_retry_seconds=_float(env, "SPEKO_RECORD_RETRY_SECONDS", 30.0, 0.0, 3600.0),
        max_sessions=_int(env, "SPEKO_MAX_SESSIONS", 10_000, 1, 1_000_000),
        db_busy_timeout_ms=_int(env, "SPEKO_DB_BUSY_TIMEOUT_MS", 5000, 1, 600_000),
        redis_url=redis_url,
        redis_prefix=env.get("SPEKO_REDIS_PREFIX") or "speko:",
        record_retention_seconds=_int(
            env, "SPEKO_RECORD_RETENTION_SECONDS", 7 * 24 * 3600, 60, 366 * 24 * 3600
        ),
        drain_seconds=_float(env, "SPEKO_DRAIN_SECONDS", 30.0, 0.0, 3600.0),
        # at most 10 minutes: the provider connection and the per-key slot stay held meanwhile
        resume_seconds=_float(env, "SPEKO_RESUME_SECONDS", 15.0, 0.0, 600.0),
        mint_rate_per_minute=mint_rate,
        mint_burst=_int(env, "SPEKO_MINT_BURST", max(mint_rate, 1), 1, 1_000_000),
        max_sessions_per_key=_int(env, "SPEKO_MAX_SESSIONS_PER_KEY", 0, 0, 1_000_000),
        overload_lag_ms=_float(env, "SPEKO_OVERLOAD_LAG_MS", DEFAULT_OVERLOAD_LAG_MS, 0.0,
                               MAX_OVERLOAD_LAG_MS),
        overload_cpu_percent=_float(env, "SPEKO_OVERLOAD_CPU_PERCENT", DEFAULT_OVERLOAD_CPU_PERCENT,
                                    0.0, MAX_OVERLOAD_CPU_PERCENT),
        log_format=log_format,
        models=models,
    )
