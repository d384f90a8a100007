"""The `bashlsp-train` command (personal fine-tuning and pre-training)."""

from __future__ import annotations

import argparse
import sys

from bashlsp.model.errors import BashlspError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bashlsp-train",
        description="Fine-tune the bashlsp model on your own shell scripts, keep watching them, "
        "and publish better checkpoints that running servers pick up.",
    )
    parser.add_argument("dirs", nargs="*", metavar="DIR", help="folders of your scripts (read, never written)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if not args.dirs:
            raise BashlspError("give at least one folder of scripts (see --help)")
        from bashlsp.training.personal import run_personal_training

        return int(run_personal_training(args) or 0)
    except BashlspError as exc:
        print(f"bashlsp-train: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
