"""The default model's training corpus: Debian shell scripts and tldr-pages snippets.

Build it with `python -m bashlsp.training.corpus.debian --out DIR` and
`python -m bashlsp.training.corpus.tldr --out DIR`; read it with `load_corpus(DIR, split)`.
Shell detection for any file (also the user's own scripts and open documents) lives in `bashlsp.model.shell`.
"""

from .dataset import CorpusDoc, TldrPair, load_corpus, load_tldr_pairs

__all__ = ["CorpusDoc", "TldrPair", "load_corpus", "load_tldr_pairs"]
