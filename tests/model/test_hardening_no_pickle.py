"""No code path in model/, server/ or training/ can unpickle anything.

A syntax-tree scan (so a call split over lines or an `import pickle as p` is seen too) fails on:
- importing pickle, _pickle, cPickle, cloudpickle, dill, joblib, shelve or marshal (any form);
- `torch.load(...)` without `weights_only=True`, and `torch.serialization` loads;
- `numpy.load(..., allow_pickle=True)` (numpy's default is safe), `pandas.read_pickle`.
The scanner is checked on snippets that must be flagged, so a broken scan cannot pass silently.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PICKLE_MODULES = {"pickle", "_pickle", "cPickle", "cloudpickle", "dill", "joblib", "shelve", "marshal"}


def _dotted(node: ast.AST) -> str:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return ".".join(reversed(parts))


def _keyword_is(call: ast.Call, name: str, value) -> bool:
    return any(k.arg == name and isinstance(k.value, ast.Constant) and k.value.value is value for k in call.keywords)


def pickle_uses(source: str) -> list[str]:
    """Line-numbered findings in one Python source."""
    tree = ast.parse(source)
    aliases = {"torch": "torch", "numpy": "numpy", "np": "numpy", "pandas": "pandas", "pd": "pandas"}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                root = alias.name.split(".")[0]
                if root in PICKLE_MODULES:
                    found.append(f"{node.lineno}: import {alias.name}")
                if root in ("torch", "numpy", "pandas"):
                    aliases[alias.asname or root] = alias.name
        elif isinstance(node, ast.ImportFrom):
            module = (node.module or "").split(".")[0]
            if module in PICKLE_MODULES:
                found.append(f"{node.lineno}: from {node.module} import ...")
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                if full in ("torch.load", "numpy.load", "pandas.read_pickle") or full.startswith("torch.serialization"):
                    aliases[alias.asname or alias.name] = full
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        head, _, rest = name.partition(".")
        full = aliases.get(head, head) + (f".{rest}" if rest else "")
        if full in ("torch.load", "torch.serialization.load") and not _keyword_is(node, "weights_only", True):
            found.append(f"{node.lineno}: {name}(...) without weights_only=True")
        elif full == "numpy.load" and _keyword_is(node, "allow_pickle", True):
            found.append(f"{node.lineno}: {name}(..., allow_pickle=True)")
        elif full == "pandas.read_pickle":
            found.append(f"{node.lineno}: {name}(...)")
    return found


def test_scanner_flags_every_form():
    must_flag = [
        "import pickle",
        "import cloudpickle as cp",
        "from joblib import load",
        "import dill",
        "from pickle import loads",
        "import torch\ntorch.load(path)",
        "import torch\ntorch.load(\n    path,\n    weights_only=False)",
        "import torch as t\nt.load(path)",
        "from torch import load\nload(path)",
        "from torch import load as l\nl(p)",
        "import numpy as np\nnp.load(path, allow_pickle=True)",
        "import numpy\nnumpy.load(p, allow_pickle=True)",
        "import pandas as pd\npd.read_pickle(p)",
        "import shelve",
        "import marshal",
    ]
    for source in must_flag:
        assert pickle_uses(source), source
    must_pass = [
        "import torch\ntorch.load(path, weights_only=True)",
        "import numpy as np\nnp.load(path)",
        "from safetensors.torch import load_file\nload_file(p)",
        "import json\njson.load(f)",
    ]
    for source in must_pass:
        assert pickle_uses(source) == [], source


def test_no_pickle_loading_in_model_server_training():
    offenders = []
    scanned = 0
    for folder in ("model", "server", "training"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            scanned += 1
            offenders += [
                f"{path.relative_to(ROOT)}:{finding}" for finding in pickle_uses(path.read_text(encoding="utf-8"))
            ]
    assert scanned > 20
    assert offenders == []
