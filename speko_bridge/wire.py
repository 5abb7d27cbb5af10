"""The REST API's wire types: the bodies of ``/v1/sessions``, ``/healthz`` and ``/readyz``.

One module with nothing but msgspec Structs, so that each side of the wire imports only
what it needs: the routes (``api.py``) encode them, the OpenAPI document (``openapi.py``)
is generated from them, and the Python SDK (``client.py``) decodes them without pulling in
Starlette, the session store or yaml (``tests/test_imports.py`` checks that). The mint body
itself, :class:`~speko_bridge.params.SessionParams`, lives in ``params.py`` because the
bridge and the store use it too.
"""

from __future__ import annotations

import re

import msgspec

from .params import TurnDetection  # noqa: F401  (part of the mint answer; re-exported)


class ErrorDetail(msgspec.Struct):
    code: str  # an ApiErrorCode value (speko_bridge/codes.py)
    message: str


# A docstring here would become the schema's description in openapi.yaml (the published
# schema is kept as it was): every REST error is {"error": {"code", "message"}}.
class ErrorBody(msgspec.Struct):
    error: ErrorDetail


class UsageTotals(msgspec.Struct, rename="camel"):
    input_audio_tokens: int = 0
    output_audio_tokens: int = 0


class SessionCreated(msgspec.Struct, rename="camel"):
    """``201`` answer to ``POST /v1/sessions``: the token, and (protocol v2) the effective
    session settings, so that a browser handed this whole object can connect and play
    audio at the right rate with nothing else."""

    session_id: str
    token: str
    expires_at: str  # ISO-8601 UTC: the socket must be opened before this
    url: str
    ttl_seconds: int
    provider: str
    model: str
    input_sample_rate: int
    output_sample_rate: int
    turn_detection: TurnDetection


class SessionView(msgspec.Struct, rename="camel", omit_defaults=False):
    """A session record as its owner sees it."""

    session_id: str
    provider: str
    model: str
    status: str
    created_at: str
    expires_at: str
    ttl_seconds: int
    started_at: str | None
    ended_at: str | None
    close_code: int | None
    close_reason: str | None
    usage: UsageTotals
    metadata: dict | None


class Health(msgspec.Struct, omit_defaults=True):
    status: str
    #: Why the server is not ready, when the status alone does not say (``overloaded``).
    reason: str | None = None


_FIELD_ERROR = re.compile(r"^Object (missing required|contains unknown) field `([^`]+)`(?: - at `\$(.*)`)?$")


def validation_message(exc: msgspec.ValidationError) -> str:
    """msgspec's message, with the field always named as `` `$.path` ``: msgspec names a
    missing or unknown field only by its bare name ("Object missing required field
    `provider`"), while every other error ends "- at `$.field`" (the server's 422 and the
    Python SDK's local validation say the same)."""
    text = str(exc)
    match = _FIELD_ERROR.match(text)
    if match is None:
        return text
    kind, field, parent = match.groups()
    what = "missing required field" if kind == "missing required" else "unknown field"
    return f"{what} - at `${parent or ''}.{field}`"
