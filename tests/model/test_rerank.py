"""The command-example reranker: its features (model/examples.py), its weights file beside an
index, and its training (training/rerank.py) on tiny fixtures."""

from __future__ import annotations

import json

import numpy as np

from bashlsp.model.examples import (
    RERANK_FEATURES,
    RERANK_FILE,
    RERANK_FORMAT,
    Candidate,
    Example,
    ExampleIndex,
    Reranker,
    rerank_features,
    write_index,
)
from bashlsp.training.rerank import first_scores, train

ENTRIES = [
    Example("List files", "ls", "tldr", "ls", "CC-BY-4.0"),
    Example("List all files, hidden ones too", "ls -a", "tldr", "ls", "CC-BY-4.0"),
    Example("List files in a tree", "tree", "tldr", "tree", "CC-BY-4.0"),
    Example("Find files by name", "find . -name '*.txt'", "tldr", "find", "CC-BY-4.0"),
    Example("Find only files (-type f)", "find . -type f", "cheat", "find", "MIT"),
]


def candidates(commands_and_pages):
    return [
        Candidate(Example(f"about {c}", c, "tldr", p, "CC-BY-4.0", score=-10.0 + i), -5.0 + i, -2.0, "")
        for i, (c, p) in enumerate(commands_and_pages)
    ]


def one_hot_reranker(feature: str, pool: int = 30) -> Reranker:
    weights = [1.0 if name == feature else 0.0 for name in RERANK_FEATURES]
    return Reranker(weights, [0.0] * len(weights), [1.0] * len(weights), pool)


def test_features_see_named_flags_utilities_and_shares():
    found = candidates([("find . -name x", "find"), ("find . -type f", "find"), ("ls -a", "ls")])
    rows = rerank_features("find only files (-type f) with ls", found)
    assert all(len(row) == len(RERANK_FEATURES) for row in rows)
    column = {name: [row[i] for row in rows] for i, name in enumerate(RERANK_FEATURES)}
    assert column["flags_named"] == [0.0, 1.0, 0.0]
    assert column["names_utility"] == [1.0, 1.0, 1.0]
    assert column["score_ratio"][0] == 1.0 and column["score_ratio"][2] < column["score_ratio"][1] < 1.0
    assert column["utility_share"][0] == column["utility_share"][1] > column["utility_share"][2]
    assert column["source_tldr"] == [1.0, 1.0, 1.0] and column["source_man"] == [0.0, 0.0, 0.0]


def test_rerank_reorders_the_pool_and_hands_the_scores_out_again():
    found = candidates([("find . -name x", "find"), ("find . -type f", "find"), ("ls -a", "ls"), ("tree", "tree")])
    ranked = one_hot_reranker("flags_named", pool=3).rerank("find files (-type f)", found)
    assert [e.command for e in ranked] == ["find . -type f", "find . -name x", "ls -a", "tree"]
    assert [e.score for e in ranked] == sorted(e.score for e in ranked)  # merging keeps this order
    assert ranked[-1] == found[-1].example  # past the pool: untouched


def test_an_index_reads_the_reranker_beside_it_and_survives_a_bad_one(tmp_path):
    path = tmp_path / "examples.sqlite"
    write_index(path, ENTRIES, {})
    assert ExampleIndex(path).reranker is None
    weights = [1.0 if name == "flags_named" else 0.0 for name in RERANK_FEATURES]
    record = {"format": RERANK_FORMAT, "features": list(RERANK_FEATURES), "weights": weights}
    record |= {"mean": [0.0] * len(weights), "scale": [1.0] * len(weights), "pool": 30}
    (tmp_path / RERANK_FILE).write_text(json.dumps(record))
    index = ExampleIndex(path)
    assert index.reranker is not None and index.warning == ""
    assert index.search("find only files (-type f)", 1)[0].command == "find . -type f"
    (tmp_path / RERANK_FILE).write_text(json.dumps(record | {"features": ["other"]}))
    index = ExampleIndex(path)
    assert index.reranker is None and "not usable" in index.warning
    assert index.search("find files by name", 1)[0].page == "find"  # bm25's order, still answering
    (tmp_path / RERANK_FILE).write_text("{not json")
    assert "not usable" in ExampleIndex(path).warning


def test_training_learns_to_put_the_best_candidate_first():
    rng = np.random.default_rng(0)
    groups = []
    for _ in range(60):
        features = rng.normal(size=(8, len(RERANK_FEATURES)))
        labels = np.where(features[:, 4] > 0.5, 1.0, -1.0)  # the label follows one feature
        groups.append((features, labels))
    weights, mean, scale = train(groups, steps=300)
    assert first_scores(groups, weights, mean, scale) > first_scores(groups) + 0.5
    assert int(np.argmax(np.abs(weights))) == 4
