"""The browser SDK's TypeScript declarations: ``tsc --noEmit --strict`` on the declarations
and on ``examples/typescript/talk.ts`` (written the way the published contract shows), and
on code that breaks the contract, which must not compile (so the declarations are not
``any`` in disguise). TypeScript comes from npm into a temp dir, once per run."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DECLARATIONS = ROOT / "speko_bridge" / "static" / "sdk" / "speko-realtime.d.ts"
EXAMPLE = ROOT / "examples" / "typescript" / "talk.ts"
#: A major version known to run on Node 20 with the classic `tsc` entry point.
TYPESCRIPT = "typescript@5"


@pytest.fixture(scope="module")
def tsc(tmp_path_factory) -> Path:
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail("node and npm are needed: `make test` installs them with apt")
    directory = tmp_path_factory.getbasetemp() / "node-typescript"
    binary = directory / "node_modules" / ".bin" / "tsc"
    if not binary.exists():
        directory.mkdir(exist_ok=True)
        (directory / "package.json").write_text('{"name": "speko-tsc", "private": true}')
        proc = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--loglevel=error", TYPESCRIPT],
                              cwd=directory, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
    return binary


def check(tsc: Path, directory: Path, *files: Path) -> subprocess.CompletedProcess:
    config = {
        "compilerOptions": {
            "strict": True, "noEmit": True, "target": "es2022", "module": "es2022",
            "moduleResolution": "bundler", "lib": ["es2022", "dom"], "types": [], "skipLibCheck": False,
            "paths": {"speko-realtime": [str(DECLARATIONS)]},
        },
        "files": [str(DECLARATIONS), *map(str, files)],
    }
    (directory / "tsconfig.json").write_text(json.dumps(config))
    return subprocess.run([str(tsc), "-p", str(directory / "tsconfig.json")], capture_output=True, text=True,
                          timeout=120)


def test_declarations_and_the_typed_example_compile(tsc, tmp_path):
    proc = check(tsc, tmp_path, EXAMPLE)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("wrong,error", [
    ('s.on((f) => { if (f.type === "audio") { const x: Int16Array = f.pcm; } });', "TS2"),  # pcm is a Uint8Array
    ('s.on("transcript", (f) => f.callId);', "TS2339"),           # a transcript has no callId
    ('s.sendAudio("pcm");', "TS2345"),                           # audio is bytes
    ('const id: number = s.sessionId;', "TS2322"),               # ids are strings
])
def test_code_that_breaks_the_contract_does_not_compile(tsc, tmp_path, wrong, error):
    source = tmp_path / "wrong.ts"
    source.write_text('import { connect } from "speko-realtime";\n'
                      'export async function f(a: any) { const s = await connect(a);\n' + wrong + "\n}\n")
    proc = check(tsc, tmp_path, source)
    assert proc.returncode != 0 and error in proc.stdout, proc.stdout
