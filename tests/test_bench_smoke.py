"""`make bench-smoke` runs inside `make test` so the benchmark harness cannot rot: every
benchmark runs at small size against real processes, writes its results and plots, and no
frame is lost or reordered on any path. How fast anything was is not checked here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: The benchmarks at small size measure the machine (the soak's RSS growth, frames kept up
#: with): `make test` runs them alone, after the parallel run (the `solo` marker).
pytestmark = pytest.mark.solo


def test_bench_smoke_runs_every_benchmark_and_loses_no_frame(tmp_path):
    proc = subprocess.run([sys.executable, "bench/run.py", "--smoke", "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for name in ("capacity", "cpu_ratio", "connect", "memory", "mint", "micro", "turn", "summary", "overload"):
        assert (tmp_path / f"{name}.json").is_file(), name
    for png in ("latency.png", "cpu.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    capacity = json.loads((tmp_path / "capacity.json").read_text())
    assert {(r["target"], r["rate"]) for r in capacity} == {
        (t, r) for t in ("direct", "floor", "bridge") for r in (16000, 24000)}
    for row in capacity:
        assert row["frames_timed"] > 0, row
        assert row["lost"] == 0 and row["reordered"] == 0 and row["session_error_count"] == 0, row
        assert row["extra_samples"] == 0, row
    ratios = json.loads((tmp_path / "cpu_ratio.json").read_text())  # floor and bridge, both rates
    assert {r["rate"] for r in ratios} == {16000, 24000}, ratios
    assert all(r["ratio"] and r["lost"] == 0 for r in ratios), ratios
    over = json.loads((tmp_path / "overload.json").read_text())
    assert over["lost_admitted"] == 0 and over["error_count"] == 0, over
    turns = json.loads((tmp_path / "turn.json").read_text())
    assert {(r["target"], r["rate"]) for r in turns} == {
        (t, r) for t in ("direct", "bridge") for r in (16000, 24000)}
    for row in turns:  # every session took its turns and heard every answer
        assert row["session_error_count"] == 0 and row["turns"] == row["sessions"] * 2, row
    mint = json.loads((tmp_path / "mint.json").read_text())
    assert all(m["errors"] == 0 and m["rps"] > 0 for m in mint)
    verdicts = json.loads((tmp_path / "summary.json").read_text())["verdicts"]
    assert len(verdicts) >= 6 and all(v[3] in ("PASS", "FAIL") for v in verdicts)
    assert "Targets" in proc.stdout and "Sessions per core" in proc.stdout
    assert "commit -> first audio" in proc.stdout


def _stream(frames: int):
    sys.path.insert(0, str(ROOT / "bench"))
    import capacity

    s = capacity.Stream(16000, frames)
    for k in range(frames):
        s.sent[k] = 1.0 + k * 0.02
    return s


def test_frame_checker_sees_a_lost_and_a_swapped_frame():
    """The harness's own checker must be able to fail: a dropped frame and two frames
    swapped are both caught, and an intact stream is clean."""
    clean, lost, swapped = _stream(10), _stream(10), _stream(10)
    for k in range(10):
        clean.on_audio(clean.frame(k), 1.0 + k * 0.02 + 0.001)
    order = [0, 1, 3, 2, 4, 5, 6, 7, 8, 9]
    for i, k in enumerate(order):
        swapped.on_audio(swapped.frame(k), 1.0 + i * 0.02 + 0.001)
    for k in [0, 1, 2, 4, 5, 6, 7, 8, 9]:
        lost.on_audio(lost.frame(k), 1.0 + k * 0.02 + 0.001)
    assert (clean.complete, clean.bad) == (10, 0)
    assert abs(clean.worst[5] - 0.001) < 1e-9  # a frame's latency is its worst sample's
    assert swapped.bad == 2
    assert lost.bad >= 6 and lost.complete == 9


def test_store_bench_smoke_compares_backends_and_drains_every_session(tmp_path):
    proc = subprocess.run([sys.executable, "bench/stores.py", "--smoke", "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads((tmp_path / "stores.json").read_text())
    assert set(result["consume"]) == set(result["mint"]) == {"sqlite", "redis"}
    drain = result["drain"]
    assert drain["closed_1001"] == drain["records_ended_1001"] == drain["sessions"] > 0
    assert drain["exit_code"] == 0


def test_soak_for_20_seconds_loses_nothing_and_does_not_grow(tmp_path):
    """The short version of `make soak`: 200 sessions, 20 s, every frame checked."""
    proc = subprocess.run([sys.executable, "bench/soak.py", "--sessions", "200", "--seconds", "20",
                           "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert "verdict:" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads((tmp_path / "soak.json").read_text())
    assert result["frames_sent"] == 200 * 21 * 50
    assert result["lost"] == 0 and result["reordered"] == 0 and result["extra_samples"] == 0, result
    assert result["session_error_count"] == 0, result["session_errors"]
    assert result["rss_growth_pct"] < 5, result["rss_samples"]
    assert proc.returncode == 0 and "verdict: PASS" in proc.stdout


def test_soak_offered_twice_accounts_for_every_session_and_loses_nothing(tmp_path):
    """The short version of `make soak-overload`: 10 sessions, 10 more offered (each
    minting and opening like a real client); every one of the excess is either refused
    (503 or 4029, with its time) or admitted, and no admitted session loses a frame."""
    proc = subprocess.run([sys.executable, "bench/soak.py", "--sessions", "10", "--factor", "2",
                           "--seconds", "15", "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert "verdict:" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads((tmp_path / "soak_overload.json").read_text())
    assert result["offered"] == 20
    assert result["refused_mint"] + result["refused_socket"] + result["excess_admitted"] == 10, result
    assert result["lost_admitted"] == 0 and result["reordered"] == 0 and result["error_count"] == 0, result
    assert result["p99_before_ms"] is not None and result["p99_during_ms"] is not None


def test_before_after_compares_two_commits_on_every_row_and_loses_nothing(tmp_path):
    """`bench/before_after.py` at small size with this commit as "before": both bridges run
    every row (CPU at both rates, turns, the overload offer), and nothing is lost."""
    proc = subprocess.run([sys.executable, "bench/before_after.py", "--before", "HEAD", "--sessions", "5",
                           "--reps", "1", "--seconds", "1", "--turns", "2", "--capacity", "5",
                           "--offer-seconds", "10", "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads((tmp_path / "before_after.json").read_text())
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout
    assert result["before"] == head.strip()
    assert {r["rate"] for r in result["cpu"]} == {16000, 24000}
    for row in result["cpu"]:
        assert set(row["cpu_pct"]) == {"floor", "before", "after"} and row["lost"] == 0, row
    assert {(r["label"], r["rate"]) for r in result["turn"]} == {
        (t, r) for t in ("direct", "before", "after") for r in (16000, 24000)}
    for row in result["turn"]:  # 2 turns, the first untimed: one timed turn per session
        assert row["session_error_count"] == 0 and row["turns"] == 5, row
    assert [r["label"] for r in result["overload"]] == ["before", "after"]
    for row in result["overload"]:
        assert row["refused_mint"] + row["refused_socket"] + row["excess_admitted"] == 5, row
        assert row["lost_admitted"] == 0 and row["error_count"] == 0, row
    text = (tmp_path / "before_after.txt").read_text()
    assert "after / before" in text and "Overload" in text


def test_before_after_takes_a_checkout_directory_and_runs_only_the_rows_asked(tmp_path):
    """The quick "is this change slower?" form: another checkout's directory as "before",
    the CPU rows alone."""
    proc = subprocess.run([sys.executable, "bench/before_after.py", "--before", str(ROOT), "--rows", "cpu",
                           "--sessions", "5", "--reps", "1", "--seconds", "1", "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads((tmp_path / "before_after.json").read_text())
    assert result["before"] == str(ROOT)
    assert {r["rate"] for r in result["cpu"]} == {16000, 24000}
    for row in result["cpu"]:
        assert set(row["cpu_pct"]) == {"floor", "before", "after"} and row["lost"] == 0, row
    assert result["turn"] == [] and result["overload"] == []
    text = (tmp_path / "before_after.txt").read_text()
    assert "after / before" in text and "Turn" not in text and "Overload" not in text
