"""`bashlsp bench context repo` runs end to end (a short run with the tiny model on the fixture
scripts as one project; the figures in docs/benchmarks.md come from held-out packages)."""

from __future__ import annotations

import json
import shutil

from support import FIXTURE_SCRIPTS, run_cli

from bashlsp.server.completion import COPY_MIN


def test_bench_context_repo_measures_with_and_without_the_workspace(tiny_checkpoint, tmp_path):
    project = tmp_path / "proj"
    project.mkdir()
    for script in FIXTURE_SCRIPTS[:3]:
        shutil.copy(script, project / script.name)
    out = tmp_path / "context.json"
    result = run_cli(
        "bench",
        "context",
        "repo",
        str(project),
        "--checkpoint",
        str(tiny_checkpoint),
        "--max-files",
        "3",
        "--lines-per-file",
        "2",
        "--ksr-chars",
        "30",
        "--line-confidence",
        "0",
        "0.3",
        "--json",
        str(out),
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    runs = json.loads(out.read_text())["runs"]
    assert [(r["line_confidence"], r["workspace"]) for r in runs] == [(0, False), (0, True), (0.3, False), (0.3, True)]
    for run in runs:
        assert run["files"] == 3 and run["lines"] == 6 and run["characters"] >= 90
        assert 0 <= run["exact_match"] <= 1 and 0 <= run["edit_similarity"] <= 1 and 0 <= run["ksr"] <= 1
    assert runs[0]["lines_with_chunks"] == 0  # without the workspace no chunk goes ahead
    assert all(r["copy_min"] == COPY_MIN and r["line_copies"] <= r["lines"] for r in runs)
    assert "next line EM" in result.stdout
