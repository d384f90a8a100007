"""Write the replay sample that ships beside the default model.

`bashlsp-train` mixes it into every batch of a personal round so that fine-tuning on one
folder's style does not make the small model forget general bash (issue 16). It is a sample of
the base model's own training data: whole scripts of the train split of the first corpus's
binary packages (the ones the bundled model was trained on, see model/weights/README.md), a
few from each package round-robin so no project dominates, one JSON line per script with its
package, version, path and licence. Nothing of the general holdout (the gate's measure) is in
it: the holdout packages are never read, and a script whose text equals a holdout text is left
out.

    python -m bashlsp.training.corpus.replay --corpus /work/data/corpus --out model/weights/replay
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections import defaultdict
from pathlib import Path

from ...model.errors import TrainingError
from .dataset import _read_jsonl
from .debian import read_package_list

REPLAY_FILE = "replay.jsonl"
DEFAULT_MAX_BYTES = 1_000_000
# Small and mid-sized scripts: a replay window of 256 tokens is ~800 bytes, so a 100 KB
# completion file would mostly replay one package's lists of options.
MIN_FILE_BYTES, MAX_FILE_BYTES = 400, 16_000
FIRST_PACKAGE_LIST = Path(__file__).with_name("debian-shell-packages.tsv")


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def pick_replay(corpus: Path, holdout_texts: list[str], max_bytes: int = DEFAULT_MAX_BYTES) -> list[dict]:
    """Round-robin over the first corpus's training packages (sorted by name), each package's
    scripts in digest order (a fixed pseudo-random order), up to max_bytes."""
    manifest = Path(corpus) / "manifest.jsonl"
    if not manifest.is_file():
        raise TrainingError(
            f"{manifest} does not exist: build the corpus with python -m bashlsp.training.corpus.debian"
        )
    base_packages = {spec.name for spec in read_package_list(FIRST_PACKAGE_LIST)}
    held_out = {_digest(text) for text in holdout_texts}
    by_package: dict[str, list[dict]] = defaultdict(list)
    for record in _read_jsonl(manifest):
        if (
            record["split"] == "train"
            and record.get("origin", "deb") == "deb"
            and record["package"] in base_packages
            and MIN_FILE_BYTES <= record["bytes"] <= MAX_FILE_BYTES
        ):
            by_package[record["package"]].append(record)
    if not by_package:
        raise TrainingError(f"{manifest} holds no training scripts of the first corpus's packages")
    queues = {name: sorted(records, key=lambda r: r["sha256"]) for name, records in sorted(by_package.items())}
    chosen, total = [], 0
    while total < max_bytes and any(queues.values()):
        for queue in queues.values():
            if not queue or total >= max_bytes:
                continue
            record = queue.pop(0)
            text = (Path(corpus) / record["file"]).read_text(encoding="utf-8")
            if _digest(text) in held_out:
                continue
            chosen.append(
                {
                    "text": text,
                    "package": record["package"],
                    "version": record["version"],
                    "path": record["path"],
                    "licence": record["licence"],
                }
            )
            total += len(text.encode("utf-8"))
    return chosen


def load_holdout_texts(folder: Path) -> list[str]:
    texts = []
    for path in sorted(Path(folder).glob("*.jsonl")):
        texts += [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return texts


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bashlsp.training.corpus.replay", description=__doc__.split("\n\n")[0])
    p.add_argument("--corpus", type=Path, required=True, help="a corpus built by bashlsp.training.corpus.debian")
    p.add_argument("--out", type=Path, required=True, help="folder to write replay.jsonl into")
    p.add_argument(
        "--holdout",
        type=Path,
        default=Path(__file__).resolve().parents[2] / "model" / "weights" / "holdout",
        help="the general holdout folder, kept out of the sample (default: the bundled model's)",
    )
    p.add_argument("--max-bytes", type=int, default=DEFAULT_MAX_BYTES)
    args = p.parse_args(argv)
    try:
        records = pick_replay(args.corpus, load_holdout_texts(args.holdout), args.max_bytes)
    except TrainingError as exc:
        print(f"replay: error: {exc}", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / REPLAY_FILE, "w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    packages = {r["package"] for r in records}
    licences = sorted({r["licence"] for r in records})
    size = sum(len(r["text"].encode()) for r in records)
    print(
        f"wrote {len(records)} scripts ({size / 1e6:.2f} MB) from {len(packages)} packages to {args.out / REPLAY_FILE}"
    )
    print(f"licences: {', '.join(licences)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
