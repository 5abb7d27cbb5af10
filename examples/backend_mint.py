"""A backend that mints for its browser page: the pattern every app needs, in one file.

    export SPEKO_KEY=sk_dev_...        # the key `make run` prints; it never reaches the browser
    .venv/bin/python examples/backend_mint.py      # then open http://127.0.0.1:8080/

It serves the page in examples/browser/ from its own origin (another port than the bridge's,
so the browser imports the SDK cross-origin, as a real app does) and answers ``POST
/session`` with a fresh mint answer from the bridge. A real backend would check its own
user's login before minting; the page hands the answer to the SDK's ``connect()`` as it is.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from aiohttp import web

from speko_bridge.client import Speko, SpekoError

PAGE = Path(__file__).resolve().parent / "browser"
#: What the page may ask for; anything else is the backend's business to refuse.
PROVIDERS = {"openai": "gpt-realtime", "google": "gemini-2.5-flash-native-audio-preview-12-2025", "xai": "grok-voice-latest"}
#: A tool the page may ask the model to have ({"tools": true}); the page answers its calls.
WEATHER = {"name": "get_weather", "description": "Weather for a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


async def mint(request: web.Request) -> web.Response:
    body = await request.json() if request.can_read_body else {}
    provider = body.get("provider", "openai")
    if provider not in PROVIDERS:
        return web.json_response({"error": {"code": "invalid_request", "message": "unknown provider"}}, status=422)
    try:
        session = await request.app["speko"].create_session(
            provider=provider, model=PROVIDERS[provider], input_sample_rate=16000, output_sample_rate=24000,
            system_prompt="You are a helpful assistant.", metadata={"app": "backend_mint example"},
            tools=[WEATHER] if body.get("tools") is True else None)
    except SpekoError as exc:
        return web.json_response({"error": {"code": exc.code, "message": exc.message}}, status=exc.status or 502)
    # the mint answer, as the bridge gave it (camelCase): the browser SDK takes it as it is
    return web.json_response(session.to_answer(), headers={"Cache-Control": "no-store"})


async def page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(PAGE / "index.html")


def make_app() -> web.Application:
    app = web.Application()

    async def lifespan(app: web.Application):
        async with Speko() as speko:  # SPEKO_URL (default http://127.0.0.1:8000) and SPEKO_KEY
            app["speko"] = speko
            yield

    app.cleanup_ctx.append(lifespan)
    app.router.add_post("/session", mint)
    app.router.add_get("/", page)
    app.router.add_static("/static/", PAGE)
    return app


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    web.run_app(make_app(), host=args.host, port=args.port, print=lambda _: print(
        f"example backend on http://{args.host}:{args.port}/ (minting from the bridge)", flush=True))
