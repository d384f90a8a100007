"""Write the small general holdout that ships beside the default model.

`bashlsp-train` uses it for the forgetting check: a personal checkpoint must not lose more
than a small margin of bits per byte on general bash. It is drawn from the corpus's holdout
packages (never trained on), a few whole scripts from each package so no single project
dominates, and written as one JSON line per script with its package, path and licence:

    python -m bashlsp.training.corpus.holdout --corpus /work/data/corpus --out model/weights/holdout

It also copies the held-out scripts into a folder for ``bashlsp eval DIR`` (each under
PACKAGE/PATH), either the whole holdout split or one of its two sets, so that the figures of
models trained on the first corpus stay comparable with later ones:

    python -m bashlsp.training.corpus.holdout --corpus /work/data/corpus --export DIR --set v1

`v1`: the held-out binary packages of the first corpus (`debian.HOLDOUT_PACKAGES`); `v2`: the
held-out source packages added with corpus v2 (`debian.HOLDOUT_SOURCES` and the sources of
the v1 packages); `all`: both.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

from ...model.errors import TrainingError
from .dataset import _read_jsonl
from .debian import HOLDOUT_PACKAGES

HOLDOUT_FILE = "general.jsonl"


def pick_general_holdout(corpus: Path, max_bytes: int, max_file_bytes: int) -> list[dict]:
    """Round-robin over the holdout packages, smallest suitable scripts first, up to max_bytes."""
    by_package: dict[str, list[dict]] = defaultdict(list)
    for record in _read_jsonl(corpus / "manifest.jsonl"):
        if record["split"] == "holdout" and 400 <= record["bytes"] <= max_file_bytes:
            by_package[record["package"]].append(record)
    queues = {
        name: sorted(records, key=lambda r: (r["bytes"], r["sha256"])) for name, records in sorted(by_package.items())
    }
    chosen, total = [], 0
    while any(queues.values()):
        for name in list(queues):
            if not queues[name]:
                continue
            record = queues[name].pop(0)
            if total + record["bytes"] > max_bytes:
                queues[name] = []
                continue
            text = (corpus / record["file"]).read_text(encoding="utf-8")
            chosen.append(
                {
                    "text": text,
                    "package": record["package"],
                    "version": record["version"],
                    "path": record["path"],
                    "licence": record["licence"],
                }
            )
            total += record["bytes"]
    return chosen


HOLDOUT_SETS = ("v1", "v2", "all")


def holdout_records(corpus: Path, which: str = "all") -> list[dict]:
    """The manifest records of the holdout split, all or one set (see the module docstring)."""
    if which not in HOLDOUT_SETS:
        raise TrainingError(f"unknown holdout set {which!r}: use one of {', '.join(HOLDOUT_SETS)}")
    manifest = Path(corpus) / "manifest.jsonl"
    if not manifest.is_file():
        raise TrainingError(
            f"{manifest} does not exist: build the corpus with python -m bashlsp.training.corpus.debian"
        )
    records = [record for record in _read_jsonl(manifest) if record["split"] == "holdout"]
    if which == "all":
        return records
    in_v1 = [record.get("origin", "deb") == "deb" and record["package"] in HOLDOUT_PACKAGES for record in records]
    return [record for record, v1 in zip(records, in_v1) if v1 == (which == "v1")]


def export_holdout(corpus: Path, out: Path, which: str = "all") -> int:
    """Copy the held-out scripts to out/PACKAGE/PATH (a fresh folder); returns how many."""
    records = holdout_records(corpus, which)
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise TrainingError(f"{out} is not empty: export into a new folder")
    for record in records:
        kind = "src" if record.get("origin") == "dsc" else "deb"
        relative = record["path"].lstrip("/")
        if ".." in Path(relative).parts:  # a path from a tarball must stay inside `out`
            raise TrainingError(f"refusing to export {record['package']}:{record['path']} (contains '..')")
        target = out / f"{record['package']}.{kind}" / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((Path(corpus) / record["file"]).read_bytes())
    return len(records)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bashlsp.training.corpus.holdout", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--out", type=Path, help=f"write {HOLDOUT_FILE} (the general holdout) here")
    parser.add_argument("--max-bytes", type=int, default=64 * 1024)
    parser.add_argument("--max-file-bytes", type=int, default=12 * 1024)
    parser.add_argument("--export", type=Path, help="copy the held-out scripts into this new folder")
    parser.add_argument("--set", choices=HOLDOUT_SETS, default="all", help="with --export: which held-out set")
    args = parser.parse_args(argv)
    if args.export is not None:
        try:
            count = export_holdout(args.corpus, args.export, args.set)
        except TrainingError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        print(f"{count} held-out scripts ({args.set}) copied to {args.export}")
        return 0
    if args.out is None:
        parser.error("give --out (the general holdout) or --export")
    chosen = pick_general_holdout(args.corpus, args.max_bytes, args.max_file_bytes)
    args.out.mkdir(parents=True, exist_ok=True)
    with (args.out / HOLDOUT_FILE).open("w", encoding="utf-8") as handle:
        for record in chosen:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    packages = sorted({r["package"] for r in chosen})
    print(
        f"{len(chosen)} scripts, {sum(len(r['text'].encode()) for r in chosen):,} bytes from {len(packages)} packages: {', '.join(packages)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
