"""``speko-bridge serve`` with some of its uvicorn and aiohttp settings changed, for
bench/stack.py to compare them side by side with the ones speko_bridge/server.py chose.

    python bench/bridge_variant.py '{"ws": "websockets", "loop": "asyncio"}' --port 9200

Keys of the JSON object: any ``uvicorn.Config`` attribute (``ws``, ``loop``,
``ws_per_message_deflate``, ``ws_max_queue``...), and ``aiohttp_read_bufsize``,
``aiohttp_autoping``, ``aiohttp_heartbeat`` for the provider side. A string ``ws`` names one
of uvicorn's own implementations, so it replaces the bridge's handshake-answering subclass
(the difference in CPU is what is measured here, not the handshake fix).
"""

from __future__ import annotations

import functools
import json
import os
import sys

import aiohttp

sys.path.insert(0, os.getcwd())  # the checkout bench/common.spawn runs in, not an installed copy

from speko_bridge import cli, server


def main() -> int:
    overrides = json.loads(sys.argv[1])
    upstream = {k.removeprefix("aiohttp_"): overrides.pop(k) for k in list(overrides)
                if k.startswith("aiohttp_")}
    if "read_bufsize" in upstream:
        init = aiohttp.ClientSession.__init__
        aiohttp.ClientSession.__init__ = functools.partialmethod(init, read_bufsize=upstream.pop("read_bufsize"))
    if upstream:
        connect = aiohttp.ClientSession.ws_connect

        def ws_connect(self, *args, **kwargs):
            return connect(self, *args, **{**kwargs, **upstream})

        aiohttp.ClientSession.ws_connect = ws_connect
    chosen = server.server_config

    def server_config(*args, **kwargs):
        config = chosen(*args, **kwargs)
        for key, value in overrides.items():
            setattr(config, key, value)
        return config

    cli.server_config = server_config
    return cli.main(["serve", *sys.argv[2:]])


if __name__ == "__main__":
    sys.exit(main())
