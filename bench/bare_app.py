"""The bare endpoint the mint benchmark compares with: ``POST /v1/sessions`` on the same
stack (starlette on uvicorn, same settings as ``speko-bridge serve``) answering 201 with a
JSON body of the same size as a real mint response, and nothing else.

    python bench/bare_app.py --port 9200 --size 800
"""

from __future__ import annotations

import argparse

import uvicorn
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route


def make_app(size: int) -> Starlette:
    body = ('{"pad":"' + "x" * max(0, size - 10) + '"}').encode()

    async def mint(_request) -> Response:
        return Response(body, status_code=201, media_type="application/json")

    async def healthz(_request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    return Starlette(routes=[Route("/v1/sessions", mint, methods=["POST"]), Route("/healthz", healthz)])


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--size", type=int, required=True)
    args = ap.parse_args()
    uvicorn.run(make_app(args.size), host="127.0.0.1", port=args.port, log_level="warning",
                proxy_headers=True)
