"""Train the command-example reranker (model/examples.py `Reranker`) for an index.

    python -m bashlsp.training.rerank --index model/data/examples.sqlite
        [--out model/data/examples_rerank.json] [--folds 2] [--pool 30] [--l2 0]

bm25 finds the right utility among the first 30 candidates about two times in three, but puts
it first about two in five; a linear scorer over a few features of each candidate (its bm25
parts and rank, word overlap of the comment with its description, page summary and command,
whether the comment names its page, utility or flags, how many candidates share its utility
and page, its consensus with them; model/examples.py RERANK_FEATURES) orders them better.

Training pairs come from the index itself, never from a held-out or dev pair: in each fold,
FOLD_PERCENT of the train pages (by a salted hash; no held-out and no dev page of
training/corpus/examples.py) give half of their pairs as queries, and a copy of the index
without those pairs (nor any entry with the same command) answers them, so a query's page
keeps half its examples, as a held-out pair's does. Each candidate is labelled with its NLC2CMD
score against the query's command. The scorer maximises the expected score of a softmax over
each query's candidates (numpy, full-batch gradient ascent with an L2 penalty); serving takes
the best-scored candidate. Written: a JSON of the weights, feature means and scales, with what
it was trained on and its fit (the first candidate's mean score before and after).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ..model.examples import (
    INDEX_FILE,
    RERANK_FEATURES,
    RERANK_FILE,
    RERANK_FORMAT,
    Example,
    ExampleIndex,
    nlc2cmd_score,
    rerank_features,
    write_index,
)
from .corpus.examples import dev_page, normalised, split_of

FOLD_PERCENT = 20
POOL = 30
L2 = 0.0
STEPS = 3000
LEARNING_RATE = 1.0


def query_page(source: str, page: str, fold: int) -> bool:
    """A page whose pairs are queries in `fold`: a train page, not a dev one, FOLD_PERCENT of them."""
    if split_of(source, page) != "train" or dev_page(source, page):
        return False
    digest = hashlib.sha256(f"rerank:{fold}:{source}:{page}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % 100 < FOLD_PERCENT


def fold_split(index: ExampleIndex, fold: int, out: Path) -> list[Example]:
    """Write fold `fold`'s index to `out` (the index minus its queries and their commands) and
    return the queries: half of the pairs of the fold's pages, by the pair's hash."""
    entries = index.all_examples()
    summaries, licences = index.page_summaries()
    sources = {name: {k: v for k, v in source.items() if k != "entries"} for name, source in index.sources.items()}

    def is_query(entry: Example) -> bool:
        digest = hashlib.sha256(f"{fold}\n{entry.description}\n{entry.command}".encode()).digest()
        return query_page(entry.source, entry.page, fold) and digest[0] % 2 == 0

    queries = [entry for entry in entries if is_query(entry)]
    asked = {normalised(entry.command) for entry in queries}
    kept = [entry for entry in entries if not is_query(entry) and normalised(entry.command) not in asked]
    write_index(out, kept, sources, summaries=summaries, page_licences=licences)
    return queries


def collect(index: ExampleIndex, queries: list[Example], pool: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(features, NLC2CMD scores) of each query's first `pool` candidates (queries with fewer
    than two candidates teach nothing and are left out)."""
    groups = []
    for query in queries:
        found = index.candidates(query.description, pool)[:pool]
        if len(found) < 2:
            continue
        features = np.array(rerank_features(query.description, found), dtype=np.float64)
        labels = np.array([nlc2cmd_score(c.example.command, query.command) for c in found], dtype=np.float64)
        groups.append((features, labels))
    return groups


def train(
    groups: list[tuple[np.ndarray, np.ndarray]], l2: float = L2, steps: int = STEPS, lr: float = LEARNING_RATE
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(weights, mean, scale): a linear score over standardised features that maximises the
    mean over queries of the expected label under a softmax of the scores, minus l2 |w|^2."""
    stacked = np.concatenate([features for features, _ in groups])
    mean = stacked.mean(axis=0)
    scale = stacked.std(axis=0)
    scale[scale < 1e-9] = 1.0
    x = (stacked - mean) / scale
    y = np.concatenate([labels for _, labels in groups])
    ends = np.cumsum([len(labels) for _, labels in groups])
    starts = ends - np.array([len(labels) for _, labels in groups])
    group_of = np.repeat(np.arange(len(groups)), ends - starts)
    weights = np.zeros(x.shape[1])
    for _ in range(steps):
        s = x @ weights
        s -= np.maximum.reduceat(s, starts)[group_of]
        p = np.exp(s)
        p /= np.add.reduceat(p, starts)[group_of]
        expected = np.add.reduceat(p * y, starts)[group_of]
        gradient = x.T @ (p * (y - expected)) / len(groups) - 2 * l2 * weights
        weights += lr * gradient
    return weights, mean, scale


def first_scores(groups, weights=None, mean=None, scale=None) -> float:
    """The mean label of the candidate each query puts first: the search order's first without
    weights, else the best-scored one."""
    total = 0.0
    for features, labels in groups:
        if weights is None:
            total += labels[0]
        else:
            total += labels[int(np.argmax(((features - mean) / scale) @ weights))]
    return total / len(groups)


def build(index_path: Path, out: Path, folds: int = 2, pool: int = POOL, l2: float = L2, log=print) -> dict:
    index = ExampleIndex(index_path)
    groups = []
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="bashlsp-rerank-") as work:
        for fold in range(folds):
            path = Path(work) / f"fold{fold}" / INDEX_FILE
            queries = fold_split(index, fold, path)
            fold_index = ExampleIndex(path)
            fold_index.reranker = None  # the candidates of bm25's order are what the reranker sees
            found = collect(fold_index, queries, pool)
            fold_index.close()
            log(f"fold {fold}: {len(queries)} queries, {len(found)} with candidates ({time.time() - started:.0f} s)")
            groups += found
    index.close()
    weights, mean, scale = train(groups, l2)
    fit = {"search_first": first_scores(groups), "reranked_first": first_scores(groups, weights, mean, scale)}
    record = {
        "format": RERANK_FORMAT,
        "features": list(RERANK_FEATURES),
        "weights": [round(float(w), 6) for w in weights],
        "mean": [round(float(m), 6) for m in mean],
        "scale": [round(float(s), 6) for s in scale],
        "pool": pool,
        "trained": {
            "index": Path(index_path).name,
            "entries": index.entries,
            "folds": folds,
            "queries": len(groups),
            "l2": l2,
            "steps": STEPS,
            "fit_nlc2cmd": {k: round(v, 4) for k, v in fit.items()},
        },
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    tmp.replace(out)
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bashlsp.training.rerank", description=__doc__.split("\n\n")[0])
    parser.add_argument("--index", type=Path, required=True, help="the command-example index to train for")
    parser.add_argument("--out", type=Path, help=f"the weights (default: {RERANK_FILE} beside the index)")
    parser.add_argument("--folds", type=int, default=2)
    parser.add_argument("--pool", type=int, default=POOL, help="candidates reranked per search")
    parser.add_argument("--l2", type=float, default=L2)
    args = parser.parse_args(argv)
    out = args.out or args.index.with_name(RERANK_FILE)
    record = build(args.index, out, args.folds, args.pool, args.l2)
    print(f"wrote {out}: {record['trained']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
