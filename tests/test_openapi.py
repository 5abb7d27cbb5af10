"""``openapi.yaml`` cannot drift from the msgspec types, and the live server honours it."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import msgspec
import yaml

from speko_bridge import openapi
from speko_bridge.params import SessionParams
from speko_bridge.wire import ErrorBody, SessionCreated, SessionView

from .conftest import API_KEY, run_bridge

ROOT = Path(__file__).resolve().parent.parent
#: use_after_free: see the comment at the call.
EXCLUDED_CHECKS = "use_after_free"
#: Every provider configured, so every schema-valid body is a valid mint.
ALL_PROVIDERS = {"OPENAI_API_KEY": "sk-test", "GOOGLE_API_KEY": "g-test", "XAI_API_KEY": "xai-test",
                 # which models a server serves is operator policy outside the schema (like
                 # which providers it has keys for): schemathesis gets a server that allows any
                 "SPEKO_MODELS_OPENAI": "*", "SPEKO_MODELS_GOOGLE": "*", "SPEKO_MODELS_XAI": "*"}


def test_openapi_file_is_generated_from_the_types():
    on_disk = (ROOT / "openapi.yaml").read_text()
    assert on_disk == openapi.document_yaml(), "openapi.yaml is stale: run `make openapi`"


def test_schemas_match_msgspec_types():
    doc = yaml.safe_load((ROOT / "openapi.yaml").read_text())
    _, expected = msgspec.json.schema_components(
        [SessionParams, SessionCreated, SessionView, ErrorBody],
        ref_template="#/components/schemas/{name}",
    )
    expected["SessionParams"] = {**expected["SessionParams"], **openapi.SEMANTIC_RULE}  # v2: see openapi.py
    for name, schema in expected.items():
        assert doc["components"]["schemas"][name] == schema, name
    assert doc["openapi"].startswith("3.1")
    ops = {(path, method) for path, item in doc["paths"].items() for method in item if method != "parameters"}
    assert ops == {("/v1/sessions", "post"), ("/v1/sessions/{session_id}", "get"),
                   ("/v1/sessions/{session_id}", "delete"), ("/healthz", "get"), ("/readyz", "get"),
                   ("/metrics", "get")}
    assert "/v1/realtime" in doc["info"]["description"]


async def test_served_copy_and_schemathesis_finds_no_failures(env, http, tmp_path):
    async with run_bridge({**env, **ALL_PROVIDERS}) as bridge:
        async with http.get(f"{bridge.base}/openapi.yaml") as r:
            assert r.status == 200 and (await r.text()) == openapi.document_yaml()
        st = Path(sys.executable).with_name("st")
        proc = await asyncio.create_subprocess_exec(
            str(st), "run", f"{bridge.base}/openapi.yaml",
            "--url", bridge.base,
            "--header", f"Authorization: Bearer {API_KEY}",
            "--checks", "all",
            # DELETE revokes; the record stays readable with status "revoked" (docs/protocol.md
            # section 1), so "deleted resource still available" is the contract, not a bug.
            "--exclude-checks", EXCLUDED_CHECKS,
            "--max-examples", "40",
            "--seed", "1",
            "--workers", "1",
            "--no-color",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            cwd=tmp_path,
            env={**os.environ, "SCHEMATHESIS_HOOKS": "tests.st_hooks",
                 "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))},
        )
        out, _ = await asyncio.wait_for(proc.communicate(), 300)
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text[-20000:]
