"""Session tokens (JWT, HS256) and API keys. Pure functions: no IO, the clock is a parameter.

A token says only "session ``sub`` may open one socket between ``nbf`` and ``exp``": no
secret, no provider key, no session parameter is ever in it (those stay in the store).
Single use is enforced by the store (atomic consume of ``jti``), not here.

Key rotation: every token carries the ``kid`` of the key that signed it. The verifier
accepts the current key and every key in ``SPEKO_SIGNING_KEYS_PREVIOUS``, so a new key can
be rolled out while tokens signed by the old one are still in their (short) window.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

import jwt
import msgspec
from jwt.algorithms import HMACAlgorithm

from .codes import ErrorCode

ALGORITHM = "HS256"
#: The verifier accepts exactly this list: never "none", never an asymmetric algorithm
#: whose public key could be confused for an HMAC secret.
ALGORITHMS = [ALGORITHM]
REQUIRED_CLAIMS = ["iss", "aud", "sub", "jti", "iat", "nbf", "exp"]
#: Tokens larger than this are not even parsed (ours are ~300 bytes).
MAX_TOKEN_BYTES = 4096


def _kid(key: str) -> str:
    """A key id derived from the key; a truncated hash, so it reveals nothing usable."""
    return hashlib.sha256(b"speko-kid:" + key.encode()).hexdigest()[:16]


class _HS256OncePerKey(HMACAlgorithm):
    """PyJWT's HS256, with its key checks (not empty, not an asymmetric key) run once per
    key instead of on every token: they are ~60% of signing time and our keys never change."""

    def __init__(self) -> None:
        super().__init__(HMACAlgorithm.SHA256)
        self._prepared: dict[str | bytes, bytes] = {}

    def prepare_key(self, key: str | bytes) -> bytes:
        prepared = self._prepared.get(key)
        if prepared is None:
            prepared = self._prepared[key] = super().prepare_key(key)
        return prepared


#: Signs tokens (PyJWT's JWS layer, public API, with the HS256 above). Claims are encoded
#: by msgspec; verification stays on ``jwt.decode`` with every check.
_signer = jwt.PyJWS(algorithms=[])
_signer.register_algorithm(ALGORITHM, _HS256OncePerKey())
_encode_claims = msgspec.json.Encoder().encode


class SigningKeys:
    """The current signing key and the previous ones still accepted for verification."""

    def __init__(self, current: str, previous: Iterable[str] = ()) -> None:
        self.current_kid = _kid(current)
        self._current = current
        self._by_kid = {self.current_kid: current}
        for key in previous:
            self._by_kid.setdefault(_kid(key), key)

    def sign(self, claims: dict) -> str:
        return _signer.encode(_encode_claims(claims), self._current, algorithm=ALGORITHM,
                              headers={"kid": self.current_kid})

    def get(self, kid: object) -> str | None:
        return self._by_kid.get(kid) if isinstance(kid, str) else None


@dataclass(frozen=True, slots=True)
class MintedToken:
    token: str
    jti: str
    expires_at: int


@dataclass(frozen=True, slots=True)
class TokenClaims:
    session_id: str
    jti: str
    expires_at: int


class TokenError(Exception):
    """The token cannot open a socket; ``code`` is the error frame's code."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_urlsafe(16)}"


def mint_token(
    keys: SigningKeys, *, session_id: str, issuer: str, audience: str, now: int, window: int
) -> MintedToken:
    jti = new_id("jti")
    claims = {
        "iss": issuer,
        "aud": audience,
        "sub": session_id,
        "jti": jti,
        "iat": now,
        "nbf": now,
        "exp": now + window,
    }
    return MintedToken(keys.sign(claims), jti, now + window)


def verify_token(
    keys: SigningKeys, token: str, *, issuer: str, audience: str, now: float,
    check_expiry: bool = True,
) -> TokenClaims:
    """Check signature, algorithm, kid, issuer, audience, every claim's presence and the
    time window against ``now``. Raise :class:`TokenError` (``invalid_token`` or
    ``token_expired``). ``check_expiry=False`` accepts a token past its ``exp`` (a resume:
    the opening window bounds the first open only; the caller checks the session is live)."""
    if not token or len(token) > MAX_TOKEN_BYTES:
        raise TokenError(ErrorCode.INVALID_TOKEN, "token missing or too long")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise TokenError(ErrorCode.INVALID_TOKEN, "token is not a JWT") from None
    if header.get("alg") != ALGORITHM:
        raise TokenError(ErrorCode.INVALID_TOKEN, "token algorithm not accepted")
    key = keys.get(header.get("kid"))
    if key is None:
        raise TokenError(ErrorCode.INVALID_TOKEN, "token signed by an unknown key")
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=ALGORITHMS,
            audience=audience,
            issuer=issuer,
            # The time checks are done below against the ``now`` we were given.
            options={
                "require": REQUIRED_CLAIMS,
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
            },
        )
    except jwt.PyJWTError as exc:
        raise TokenError(ErrorCode.INVALID_TOKEN, f"token rejected: {exc}") from None
    exp, nbf, sub, jti = claims["exp"], claims["nbf"], claims["sub"], claims["jti"]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (exp, nbf)):
        raise TokenError(ErrorCode.INVALID_TOKEN, "token time claims malformed")
    if not (isinstance(sub, str) and sub and isinstance(jti, str) and jti):
        raise TokenError(ErrorCode.INVALID_TOKEN, "token subject malformed")
    if now < nbf:
        raise TokenError(ErrorCode.INVALID_TOKEN, "token not yet valid")
    if check_expiry and now >= exp:
        raise TokenError(ErrorCode.TOKEN_EXPIRED, "token expired")
    return TokenClaims(session_id=sub, jti=jti, expires_at=int(exp))


# --------------------------------------------------------------------------- API keys


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class ApiKeyring:
    """API keys, kept only as SHA-256 hashes. A key's id is derived from its hash: it
    names the owner of the sessions the key mints, and is safe to log."""

    def __init__(self, hashes: Iterable[str]) -> None:
        self._ids: dict[str, str] = {h: "key_" + hashlib.sha256(h.encode()).hexdigest()[:12] for h in hashes}

    @classmethod
    def from_config(cls, entries: Iterable[str]) -> ApiKeyring:
        """Entries are plain keys or ``sha256:<64 hex>``; raise ValueError on a bad one."""
        hashes = []
        for i, entry in enumerate(entries):
            if entry.startswith("sha256:"):
                digest = entry[len("sha256:") :].lower()
                if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
                    raise ValueError(f"entry {i + 1} is not sha256:<64 hex digits>")
                hashes.append(digest)
            else:
                if len(entry) < 16:
                    raise ValueError(f"entry {i + 1} is shorter than 16 characters")
                hashes.append(hash_api_key(entry))
        if not hashes:
            raise ValueError("no API key configured")
        return cls(hashes)

    def identify(self, presented: str) -> str | None:
        """The key id for a presented key, or None. Lookup by hash, constant-time compare."""
        digest = hash_api_key(presented)
        for stored, key_id in self._ids.items():
            if hmac.compare_digest(stored, digest):
                return key_id
        return None

    def __len__(self) -> int:
        return len(self._ids)
