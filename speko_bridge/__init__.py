"""speko_bridge: mint short-lived tokens and bridge browser WebSockets to speech-to-speech models."""

__version__ = "0.1.0"
