"""`bashlsp bench soak`: ten minutes of typing through 50 documents (issue 19).

`bashlsp bench stress` with a soak's settings: 50 documents opened, closed and reopened (the
same uris), a ghost-text and a popup request at every keystroke, a request unanswered after 30 s
counted as such, memory sampled every second and its trend after a minute of warm-up reported in
MB per hour, and after closing every document, what the server still holds. Any option of
`bench stress` given after these overrides them (`bashlsp bench soak --seconds 120`).
"""

from __future__ import annotations

import sys

from . import stress

SOAK = ["--seconds", "600", "--documents", "50", "--typists", "2", "--both", "--reopen", "--close-rate", "0.05"]
SOAK += ["--answer-timeout", "30", "--warmup", "60", "--bucket", "60"]


def main(argv: list[str] | None = None, prog: str = "bashlsp bench soak") -> int:
    return stress.main(SOAK + list(sys.argv[1:] if argv is None else argv), prog)


if __name__ == "__main__":
    sys.exit(main())
