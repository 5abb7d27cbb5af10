"""Provider registry: ``provider name -> codec, upstream URL, auth headers``.

The bridge never branches on a provider's name: everything provider-specific is either
in the codec (sans-IO translation) or in its :class:`ProviderSpec` (how to connect).
Each codec owns its defaults (e.g. ``DEFAULT_VOICE`` when the mint names no voice).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..params import SessionParams
from .base import Codec
from .google import GoogleCodec, google_headers, google_url
from .openai import OpenAICodec
from .xai import XAICodec


@dataclass(frozen=True)
class ProviderSpec:
    name: str
    codec: Callable[[SessionParams], Codec]
    #: Upstream URL for a session, from the configured base URL.
    url: Callable[[str, SessionParams], str]
    #: Handshake headers carrying the provider key.
    headers: Callable[[str], dict[str, str]]


def _with_query(base: str, **params: str) -> str:
    parts = urlsplit(base)
    query = dict(parse_qsl(parts.query))
    query.update(params)
    return urlunsplit(parts._replace(query=urlencode(query)))


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


PROVIDERS: dict[str, ProviderSpec] = {
    "openai": ProviderSpec(
        name="openai",
        codec=OpenAICodec,
        url=lambda base, params: _with_query(base, model=params.model),
        headers=_bearer,
    ),
    "google": ProviderSpec(
        name="google",
        codec=GoogleCodec,
        url=google_url,
        headers=google_headers,
    ),
    "xai": ProviderSpec(
        name="xai",
        codec=XAICodec,
        url=lambda base, params: _with_query(base, model=params.model),
        headers=_bearer,
    ),
}


def get_provider(name: str) -> ProviderSpec | None:
    return PROVIDERS.get(name)
