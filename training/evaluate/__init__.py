"""`bashlsp eval DIR`: how good is a checkpoint on a folder of shell scripts?

Four measures, each file read fresh (each defined in its module's docstring):

- metrics.py     bits per byte (xz -9e beside it); exact match and edit similarity
- tasks.py       the scripts (training/collect.py), next-line completion at sampled line starts,
                 keystroke savings (KSR) by simulated typing
- completers.py  the rest-of-line completers those tasks call: the server's engine, with or
                 without its stop-at-a-guess rule (`--completer server|reference`)
- generation.py  comment-to-script generation checked with `bash -n`: raw samples, and the
                 server's Generate script from comment (`bashlsp.model.generation`)
- cli.py         the command, the run and the report

Everything that decodes goes through the one decoder, `bashlsp.model.engine`, so eval measures
what editors get. Cost: keystroke simulation dominates: every keystroke is one engine request
(the document's KV cache is reused, so it pre-fills a token or two and decodes the suggestion).
"""

from .cli import main
from .metrics import evaluate_bpb

__all__ = ["evaluate_bpb", "main"]
