"""Client protocol codecs, sans-IO: what each kind of client says and hears.

- :mod:`.native`: ``/v1/realtime``, the bridge's own protocol (binary PCM16, JSON control
  messages, ``RealtimeFrame`` back);
- :mod:`.openai_compat`: ``/v1/openai/realtime``, OpenAI's Realtime protocol.
"""
