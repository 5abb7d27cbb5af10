"""The model catalogue: which model ids each provider is known to serve, checked at mint.

Why at mint: an unknown model is refused by the provider only once the browser's token is
spent and the upstream socket is open (OpenAI answers ``model_not_found``, Gemini closes
1008 "models/X is not found ..."), so the backend learns of a typo from a failed call. A
mint that names a model outside the catalogue is answered 422 naming ``$.model`` instead.

The lists are the ids each provider documents for its realtime endpoint (sources in
``docs/providers.md``). Providers ship new models faster than this file changes, so the
operator can replace a list with ``SPEKO_MODELS_<PROVIDER>`` (a comma list) or allow any
id with ``*`` (:data:`ANY_MODEL`). Imports nothing from the package.
"""

from __future__ import annotations

#: In a configured list, allows any model id for that provider.
ANY_MODEL = "*"

#: The default catalogue. The first id of each list is the one the docs and examples use.
KNOWN_MODELS: dict[str, tuple[str, ...]] = {
    # openai types/realtime/realtime_session_create_request_param.py (the ``model`` Literal)
    "openai": (
        "gpt-realtime", "gpt-realtime-1.5", "gpt-realtime-2", "gpt-realtime-2.1", "gpt-realtime-2.1-mini",
        "gpt-realtime-2025-08-28", "gpt-4o-realtime-preview", "gpt-4o-realtime-preview-2024-10-01",
        "gpt-4o-realtime-preview-2024-12-17", "gpt-4o-realtime-preview-2025-06-03",
        "gpt-4o-mini-realtime-preview", "gpt-4o-mini-realtime-preview-2024-12-17", "gpt-realtime-mini",
        "gpt-realtime-mini-2025-10-06", "gpt-realtime-mini-2025-12-15", "gpt-audio-1.5", "gpt-audio-mini",
        "gpt-audio-mini-2025-10-06", "gpt-audio-mini-2025-12-15",
    ),
    # Gemini API (not Vertex) Live models: ai.google.dev/gemini-api/docs/models and LiveKit's
    # google plugin README (livekit/agents, livekit-plugins-google: "Live API model support").
    # ``gemini-2.5-flash-native-audio`` alone is not a Gemini API id (Vertex uses
    # ``gemini-live-2.5-flash-native-audio``); the API closes 1008 on it.
    "google": (
        "gemini-2.5-flash-native-audio-preview-12-2025", "gemini-2.5-flash-native-audio-preview-09-2025",
        "gemini-2.5-flash-native-audio-latest", "gemini-3.1-flash-live-preview",
    ),
    # docs.x.ai Voice Agent API: the model in the URL (``?model=grok-voice-latest``).
    "xai": ("grok-voice-latest",),
}


def env_var(provider: str) -> str:
    """The setting that replaces ``provider``'s list."""
    return f"SPEKO_MODELS_{provider.upper()}"


def default_model(provider: str) -> str:
    return KNOWN_MODELS[provider][0]


def normalise(provider: str, model: str) -> str:
    """The id as the catalogue spells it (Gemini accepts ``models/<id>`` too)."""
    if provider == "google" and model.startswith("models/"):
        return model[len("models/"):]
    return model


def allowed(catalogue: tuple[str, ...], provider: str, model: str) -> bool:
    return ANY_MODEL in catalogue or normalise(provider, model) in catalogue
