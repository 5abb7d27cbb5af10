"""The live session: admission, the runner that composes a client codec with a provider
codec, the outbox, the provider link, the record, and the endpoints that start them."""

from .endpoints import openai_realtime_endpoint, realtime_endpoint
from .registry import SessionRegistry

__all__ = ["SessionRegistry", "openai_realtime_endpoint", "realtime_endpoint"]
