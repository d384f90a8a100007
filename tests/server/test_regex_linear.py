"""Every regular expression in bashlsp runs in time linear in its input (issue 19).

One line such as `export RBENV_THEME_PROMPT_PREFIX=""` once made a symbol pattern backtrack
exponentially on the event loop, and the whole server stopped answering. Python's `re` holds the
GIL for the whole match, so a slow pattern blocks every thread, not only its own request.

How it is checked, without a fixed number of milliseconds: each compiled pattern found in the
package's modules scans adversarial lines of size n and 8n (every match, as `finditer` does,
which bounds what `search`, `match` and `sub` can cost). A linear pattern takes about 8 times as
long on the long line; the bound is 3 times that growth, plus the time a linear baseline scan of
the long line takes in the same run (so timer noise on sub-millisecond figures cannot fail it).
Quadratic growth is 64 times and exponential growth does not finish: an exponential pattern
shows at the short size already, which is kept small (a few hundred characters) for that reason.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
import time

import pytest

import bashlsp.model
import bashlsp.server
import bashlsp.training

PROBE = 12  # characters of the repeated unit on the probe's short line
SMALL = 400  # characters of the repeated unit on the short line
GROWTH = 8  # the long line is this many times longer
SLACK = 3.0  # allowed growth over linear


def _patterns() -> list[tuple[str, re.Pattern]]:
    found: dict[int, tuple[str, re.Pattern]] = {}

    def collect(name: str, value, depth: int = 0) -> None:
        if isinstance(value, re.Pattern):
            found.setdefault(id(value), (name, value))
        elif isinstance(value, (list, tuple)) and depth < 3:
            for i, item in enumerate(value):
                collect(f"{name}[{i}]", item, depth + 1)
        elif isinstance(value, dict) and depth < 3:
            for key, item in value.items():
                collect(f"{name}[{key!r}]", item, depth + 1)

    for package in (bashlsp.model, bashlsp.server, bashlsp.training):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if info.name.endswith("__main__"):
                continue
            module = importlib.import_module(info.name)
            for attr, value in vars(module).items():
                collect(f"{info.name}.{attr}", value)
    return sorted(found.values(), key=lambda item: item[0])


PATTERNS = _patterns()

# (prefix, repeated unit, suffix): long names, long runs of one character, runs of `$`, quotes,
# brackets, and the shapes the patterns look for (assignments, options, secrets, mode lines).
FAMILIES = [
    ("export ", "A", '=""'),
    ("export ", "RBENV_THEME_", '=""'),
    ("local ", "a1_", "="),
    ("declare -a ", "A B ", "=x"),
    ("export ", "-a ", ""),
    ("", "a", ""),
    ("", "A", ""),
    ("", " ", "x"),
    ("", "\t", "="),
    ("", "$", ""),
    ("", "${", ""),
    ("", "$(", ""),
    ("", "$a", '"'),
    ("", '"', ""),
    ("", "'", ""),
    ("", "`", ""),
    ("", "(", ""),
    ("", "{", ""),
    ("", "[", "="),
    ("", "a[", "="),
    (";", "a[", "="),
    ("", ";a", "="),
    ("", "-", ""),
    ("", "--a", "="),
    ("", "=", ""),
    ("", "\\", ""),
    ("", "#", ""),
    ("", "/", ""),
    ("", ":", "@"),
    ("", ".", ""),
    ("", "_", ""),
    ("", "0", ""),
    ("read ", "a ", ""),
    ("for ", "a ", ""),
    ("function ", "a", "()"),
    ("", "do ", "x"),
    ("", "a()", ""),
    ("curl -u ", "a", ":"),
    ("mysql -p", "a", ""),
    ("", "password=", ""),
    ("", "AKIA", ""),
    ("", "sk-", ""),
    ("", "eyJa.", ""),
    ("", "http://a", ":"),
    ("# -*- ", "-*- ", ""),
    ("# vi: ", "ft=", ""),
    ("#!/usr/bin/env ", "-S ", ""),
    ("case ", "a ", "i"),
]


def _scan_time(pattern: re.Pattern, text: str, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _match in pattern.finditer(text):
            pass
        best = min(best, time.perf_counter() - start)
    return best


_BASELINE = re.compile(r"[^\n]+")  # one pass over the line


def _line(family: tuple[str, str, str], units: int) -> str:
    prefix, unit, suffix = family
    return prefix + unit * max(1, units // len(unit)) + suffix


def _growth_excess(pattern: re.Pattern, family: tuple[str, str, str]) -> tuple[float, float]:
    """(time on the longer line, the bound it must stay under). A probe at PROBE and 2 * PROBE
    characters first: an exponential pattern is caught there, before a longer line would hang."""
    for short_units, factor in ((PROBE, 2), (SMALL, GROWTH)):
        short, long = _line(family, short_units), _line(family, short_units * factor)
        small = _scan_time(pattern, short)
        big = _scan_time(pattern, long)
        bound = SLACK * factor * small + _scan_time(_BASELINE, long) + 1e-5
        if big > bound:
            return big, bound
    return big, bound


def test_the_patterns_are_found():
    names = {name for name, _ in PATTERNS}
    assert "bashlsp.server.symbols._DECLARE_ONLY" in names
    assert len(PATTERNS) >= 40


@pytest.mark.parametrize("name,pattern", PATTERNS, ids=[name for name, _ in PATTERNS])
def test_pattern_is_linear(name, pattern):
    slow = []
    for family in FAMILIES:
        big, bound = _growth_excess(pattern, family)
        if big > bound:
            # One more try before failing: a pause of the machine inflates one timing, while a
            # superlinear pattern is slow every time.
            big, bound = min((_growth_excess(pattern, family) for _ in range(2)), key=lambda r: r[0] / r[1])
            if big > bound:
                slow.append(
                    f"{family!r}: {big * 1e3:.2f} ms on {len(_line(family, SMALL * GROWTH))} chars, bound {bound * 1e3:.2f} ms"
                )
    assert not slow, f"{name} ({pattern.pattern[:80]!r}) grows faster than linear:\n" + "\n".join(slow)


def test_the_check_catches_a_quadratic_and_an_exponential_pattern():
    # The check itself must fail on a pattern that is only quadratic (the mildest failure), and
    # on issue 19's exponential one without hanging.
    quadratic = re.compile(r"a*b")
    big, bound = _growth_excess(quadratic, ("", "a", ""))
    assert big > bound
    name = r"[A-Za-z_][A-Za-z0-9_]*"
    exponential = re.compile(rf"^\s*(?:export|local)\s+((?:{name}\s*)+)$")
    big, bound = _growth_excess(exponential, ("export ", "A", '=""'))
    assert big > bound


def test_issue_19_lines_scan_as_fast_as_ordinary_ones():
    from bashlsp.server.symbols import scan

    ordinary = ['export PATH="$HOME/bin:$PATH"'] * 200
    hostile = [
        'export SCM_THEME_PROMPT_PREFIX=""',
        'export SCM_THEME_PROMPT_SUFFIX=""',
        'export RBENV_THEME_PROMPT_PREFIX=""',
        'export RBENV_THEME_PROMPT_PREFIX_WITH_A_MUCH_LONGER_NAME_THAN_USUAL=""',
    ] * 50

    def best(lines):
        times = []
        for _ in range(5):
            start = time.perf_counter()
            scan(lines)
            times.append(time.perf_counter() - start)
        return min(times)

    assert scan(hostile[:3]).variables == (
        "SCM_THEME_PROMPT_PREFIX",
        "SCM_THEME_PROMPT_SUFFIX",
        "RBENV_THEME_PROMPT_PREFIX",
    )
    assert best(hostile) <= 5 * best(ordinary) + 0.002
