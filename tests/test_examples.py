"""Every example in examples/ runs, as the README tells a user to run it, against a real
bridge (its built-in simulators answering): the Python conversation and the OpenAI
client here, the backend with its browser page in tests/test_browser.py, the TypeScript
example in tests/test_typescript.py. A new example that no test runs fails this file."""

from __future__ import annotations

import asyncio
import os
import sys
import wave
from pathlib import Path

import pytest

from .conftest import API_KEY, run_bridge

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


@pytest.fixture
async def bridge(env):
    async with run_bridge({**env, "SPEKO_SIMULATE": "1"}) as server:
        yield server


async def run_example(bridge, cwd: Path, *args: str, timeout: float = 30) -> str:
    # PYTHONPATH: this checkout's speko_bridge, whichever one the interpreter has installed
    env = {**os.environ, "SPEKO_URL": bridge.base, "SPEKO_KEY": API_KEY, "PYTHONPATH": str(ROOT)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, *args, cwd=cwd, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    text = out.decode()
    assert proc.returncode == 0, text
    return text


@pytest.mark.parametrize("provider", ["openai", "google"])
async def test_conversation_example_holds_a_spoken_turn(bridge, tmp_path, provider):
    out = await run_example(bridge, tmp_path, str(EXAMPLES / "conversation.py"), "--provider", provider)
    assert "user: I spoke for 1.0 seconds." in out, out
    assert "assistant: You spoke for 1.0 seconds." in out, out
    assert "closed: 1000" in out, out
    with wave.open(str(tmp_path / "reply.wav")) as w:
        assert w.getframerate() == 24000 and w.getnframes() > 0.3 * 24000  # the reply was heard


async def test_openai_client_example_holds_a_turn_with_the_openai_sdk(bridge, tmp_path):
    out = await run_example(bridge, tmp_path, str(EXAMPLES / "openai_client.py"), "--provider", "google")
    assert "assistant: You spoke for" in out and "response.done:" in out, out


def test_every_example_is_run_by_a_test():
    tests = "".join(p.read_text() for p in Path(__file__).parent.glob("test_*.py"))
    examples = [p for p in EXAMPLES.rglob("*") if p.is_file()]
    assert examples
    unrun = [str(p.relative_to(EXAMPLES)) for p in examples
             if p.name not in tests and p.parent.name not in tests]
    assert not unrun, f"examples no test runs: {unrun}"


def _blocks(language: str) -> list[str]:
    text = (ROOT / "README.md").read_text()
    return [block.split("```", 1)[0] for block in text.split(f"```{language}\n")[1:]]


async def test_readme_python_snippets_run_as_written(bridge, tmp_path):
    blocks = _blocks("python")
    assert blocks
    for i, code in enumerate(blocks):
        (tmp_path / f"snippet{i}.py").write_text(code)
        out = await run_example(bridge, tmp_path, f"snippet{i}.py")
        assert "user: I spoke for 1.0 seconds." in out and "assistant: You spoke for 1.0 seconds." in out, out


def test_readme_javascript_is_quoted_from_the_browser_example():
    """The README's browser code is lines of examples/browser/app.js, which the browser test
    runs; "..." and comment lines are the only ones of its own."""
    example = {line.strip() for line in (EXAMPLES / "browser" / "app.js").read_text().splitlines()}
    blocks = _blocks("js")
    assert blocks
    for block in blocks:
        own = [line.strip() for line in block.splitlines()
               if line.strip() and line.strip() not in ("...", "});") and not line.strip().startswith("//")]
        assert [line for line in own if line not in example] == []
    readme = (ROOT / "README.md").read_text()
    assert "../shared" not in readme and "/work/shared" not in readme
