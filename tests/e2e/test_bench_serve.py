"""`bashlsp bench serve` runs end to end against the real server (a short run with the tiny
model here; the figures in README.md come from the full run with the bundled model)."""

from __future__ import annotations

import json

from support import run_cli


def test_bench_serve_types_generates_swaps_and_reports(tiny_checkpoint, tmp_path):
    out = tmp_path / "serve.json"
    result = run_cli(
        "bench",
        "serve",
        "--checkpoint",
        str(tiny_checkpoint),
        "--chars",
        "60",
        "--generate",
        "1",
        "--first-samples",
        "1",
        "--json",
        str(out),
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(out.read_text())
    assert report["failed_requests"] == 0
    latency = report["latency"]
    assert latency["completion"]["n"] > 0 and latency["inline"]["n"] == 60 and latency["generate"]["n"] == 1
    assert 0 < latency["inline"]["p50"] <= latency["inline"]["p95"] <= latency["inline"]["max"]
    assert report["cold_start_s"] > 0 and report["rss_mb"] > 0
    assert report["swap"]["failed"] == 0 and report["swap"]["requests"] > 0
    decode = report["decode"]  # the server's own decode timing, prefill excluded
    assert decode["tokens"] > 0 and decode["seconds"] > 0 and decode["tokens_per_second"] > 0
    assert report["model"]["backend"] == "numpy"  # on a CPU the server runs without torch
    assert "cold start to first completion" in result.stdout and "hot-swap under typing" in result.stdout
    assert "decode, one stream" in result.stdout
    first = report["first_answer"]  # fresh ~20 KB documents, with and without idle time to pre-fill
    assert first["chars"] >= 20_000 and all(first[k]["n"] == 1 for k in first if k != "chars")
    assert "first ghost text in a fresh" in result.stdout and report["project_context"]["prefills"] >= 1
