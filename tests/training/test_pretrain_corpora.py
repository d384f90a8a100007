"""bashlsp-train --pretrain with several corpora: documents concatenated in order, one summary."""

import json

import pytest

from bashlsp.model.errors import TrainingError
from bashlsp.training.pretrain import build_parser, load_corpora, repo_context


def write_tldr_corpus(folder, texts, split="train"):
    folder.mkdir()
    with (folder / "tldr.jsonl").open("w") as handle:
        for n, text in enumerate(texts):
            handle.write(json.dumps({"page": f"p{n}", "platform": "common", "text": text, "split": split}) + "\n")
    return folder


def test_several_corpora_are_concatenated_in_order(tmp_path):
    first = write_tldr_corpus(tmp_path / "a", ["# list files\nls -l\n", "# copy\ncp a b\n"])
    second = write_tldr_corpus(tmp_path / "b", ["# find\nfind . -name x\n"])
    train, holdout, summary = load_corpora([first, second])
    assert train == ["# list files\nls -l\n", "# copy\ncp a b\n", "# find\nfind . -name x\n"]
    assert holdout == []
    assert summary["train_docs"] == 3 and [s["train_docs"] for s in summary["corpora"]] == [2, 1]


def test_one_corpus_keeps_its_summary(tmp_path):
    first = write_tldr_corpus(tmp_path / "a", ["# copy\ncp a b\n"])
    _, _, summary = load_corpora([first])
    assert summary["corpus"] == str(first) and "corpora" not in summary


def test_the_parser_takes_several_corpora(tmp_path):
    args = build_parser().parse_args([str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "run")])
    assert [p.name for p in args.corpus] == ["a", "b"]


def test_context_needs_a_manifest(tmp_path):
    first = write_tldr_corpus(tmp_path / "a", ["# copy\ncp a b\n"])
    with pytest.raises(TrainingError, match="needs a built corpus"):
        repo_context([first], ["# copy\ncp a b\n"])
