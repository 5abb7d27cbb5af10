"""``speko-bridge serve --host --port``: load settings, print the dev banner, run uvicorn."""

from __future__ import annotations

import argparse
import logging
import sys

import uvicorn

from .config import ConfigError, load_settings

#: uvicorn's own frame limit; the bridge enforces its smaller limit itself (4009) so a
#: client gets a proper close frame, and only absurd frames hit this one (1009).
WS_MAX_SIZE = 16 * 1024 * 1024


def serve(host: str, port: int, log_level: str) -> int:
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        settings = load_settings(host=host, port=port)
    except ConfigError as exc:
        print(f"speko-bridge: configuration error: {exc}", file=sys.stderr)
        return 2
    from .app import create_app

    app = create_app(settings)
    if settings.dev_api_key:
        print(
            "\n  speko_bridge dev server\n"
            f"    API key : {settings.dev_api_key}\n"
            f"    demo    : http://{host}:{port}/  (hold to talk in a browser)\n"
            f"    mint    : curl -s -X POST http://{host}:{port}/v1/sessions "
            f"-H 'Authorization: Bearer {settings.dev_api_key}' -H 'Content-Type: application/json' "
            "-d '{\"provider\":\"openai\",\"model\":\"gpt-realtime\"}'\n"
            f"    data    : {settings.data_dir}/ (keys and SQLite file)\n",
            flush=True,
        )
    uvicorn.run(app, host=host, port=port, log_level=log_level, ws_max_size=WS_MAX_SIZE,
                lifespan="on", proxy_headers=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="speko-bridge", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("serve", help="serve the REST API and the realtime WebSocket")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    args = parser.parse_args(argv)
    return serve(args.host, args.port, args.log_level)


if __name__ == "__main__":
    sys.exit(main())
