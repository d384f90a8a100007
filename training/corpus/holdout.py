"""Write the small general holdout that ships beside the default model.

`bashlsp-train` uses it for the forgetting check: a personal checkpoint must not lose more
than a small margin of bits per byte on general bash. It is drawn from the corpus's holdout
packages (never trained on), a few whole scripts from each package so no single project
dominates, and written as one JSON line per script with its package, path and licence:

    python -m bashlsp.training.corpus.holdout --corpus /work/data/corpus --out model/weights/holdout
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

from .dataset import _read_jsonl

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bashlsp.training.corpus.holdout", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--max-bytes", type=int, default=64 * 1024)
    parser.add_argument("--max-file-bytes", type=int, default=12 * 1024)
    args = parser.parse_args(argv)
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
