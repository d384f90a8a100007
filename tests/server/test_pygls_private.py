"""The private pygls members bashlsp leans on (listed with the reason in server/protocol.py,
PYGLS_PRIVATE) still exist with the shape the server uses. A pygls upgrade that renames or
reshapes one fails here, by name, instead of as a silent loss of answers in an editor."""

from __future__ import annotations

import inspect
import re
from importlib.metadata import version
from pathlib import Path

import pytest
from pygls.protocol import LanguageServerProtocol

from bashlsp.server import protocol
from bashlsp.server.language_server import BashLanguageServer


@pytest.fixture(scope="module")
def server():
    ls = BashLanguageServer()
    yield ls
    ls.close()


@pytest.mark.parametrize("name", sorted(protocol.PYGLS_PRIVATE))
def test_private_pygls_member_is_there_with_the_shape_we_use(name, server):
    shape, why = protocol.PYGLS_PRIVATE[name]
    assert why, name
    where = f"pygls {version('pygls')}: {name} ({why})"
    if isinstance(shape, tuple):  # a method: the parameter names we call or override it with
        method = getattr(LanguageServerProtocol, name, None)
        assert callable(method), f"{where} is gone"
        assert tuple(inspect.signature(method).parameters) == ("self", *shape), f"{where} changed its signature"
    else:  # an attribute of a live protocol: its type
        assert hasattr(server.protocol, name), f"{where} is gone"
        assert isinstance(getattr(server.protocol, name), shape), f"{where} is no longer a {shape.__name__}"


def test_every_private_pygls_member_the_server_uses_is_listed():
    # Every `self._name` / `super()._name` / overridden `def _name(` in BashlspProtocol that is
    # not bashlsp's own is pygls' and must be in the table; no other server module reaches into pygls.
    source = inspect.getsource(protocol.BashlspProtocol)
    ours = set(vars(protocol.BashlspProtocol)) - set(dir(LanguageServerProtocol))
    used = set(re.findall(r"(?:self|super\(\))\.(_[a-z]\w*)", source)) | set(re.findall(r"def (_[a-z]\w*)\(", source))
    pygls_members = {name for name in used if name not in ours and not name.startswith("__")}
    assert pygls_members == set(protocol.PYGLS_PRIVATE), sorted(pygls_members ^ set(protocol.PYGLS_PRIVATE))
    for module in Path(protocol.__file__).parent.glob("*.py"):
        if module.name != "protocol.py":
            assert not re.search(r"protocol\._[a-z]", module.read_text()), f"{module.name} reads a private pygls member"
