"""`bashlsp bench stress` runs end to end (a few seconds here; the figures come from longer runs)."""

from __future__ import annotations

import json

from support import run_cli


def test_stress_bench_runs_and_reports(tiny_checkpoint, tmp_path):
    out = tmp_path / "stress.json"
    result = run_cli(
        "bench",
        "stress",
        "--seconds",
        "4",
        "--bucket",
        "2",
        "--warmup",
        "1",
        "--typists",
        "2",
        "--documents",
        "4",
        "--checkpoint",
        str(tiny_checkpoint),
        "--json",
        str(out),
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(out.read_text())
    assert report["unexpected_errors"] == 0 and report["server_alive_at_end"] and report["server_exit_code"] == 0
    assert report["served"].get("inline", 0) > 0 and report["served"].get("completion", 0) > 0
    assert report["requests"] == report["served_total"] + sum(report["cancelled_expected"].values())
    assert any(bucket["n"] > 0 for bucket in report["latency_ms_by_bucket"])
    assert report["rss_mb"]["end"] > 0
    assert "unexpected errors: 0" in result.stdout


def test_soak_bench_reopens_documents_and_frees_their_state(tiny_checkpoint, tmp_path):
    out = tmp_path / "soak.json"
    result = run_cli(
        "bench",
        "soak",
        "--seconds",
        "6",
        "--documents",
        "6",
        "--close-rate",
        "0.3",
        "--warmup",
        "1",
        "--bucket",
        "3",
        "--checkpoint",
        str(tiny_checkpoint),
        "--json",
        str(out),
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(out.read_text())
    assert report["unanswered"] == 0 and report["unexpected_errors"] == 0
    assert report["documents_reopened"] > 0
    assert report["left_after_closing_all"] == {"documents": 0, "engine_caches": 0}
    # A popup and a ghost-text request at every keystroke.
    assert report["served"]["inline"] == report["served"]["completion"]
    assert "trend after warm-up" in result.stdout
