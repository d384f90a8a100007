"""A user's scripts with a style of their own (helpers and paths the base model never saw), so
fine-tuning on some of them measurably helps on the held-out rest."""

from __future__ import annotations

from pathlib import Path

TEMPLATE = """#!/bin/bash
# acme task {n}: mirror the {name} feed
source /opt/acme/lib/acme_common.sh
acme_log_info "starting {name} ({n})"
acme_require_cmd rsync
acme_with_lock /var/lock/acme-{name}.lock rsync -a /srv/acme/in/{name}/ /srv/acme/out/{name}/
acme_notify_ops "{name} mirrored"
acme_log_info "finished {name} ({n})"
"""
NAMES = [
    "alpha",
    "bravo",
    "charlie",
    "delta",
    "echo",
    "foxtrot",
    "golf",
    "hotel",
    "india",
    "juliet",
    "kilo",
    "lima",
    "mike",
    "november",
    "oscar",
    "papa",
    "quebec",
    "romeo",
    "sierra",
    "tango",
]


def personal_script(n: int) -> str:
    return TEMPLATE.format(n=n, name=NAMES[n % len(NAMES)])


def write_personal_scripts(folder: Path, count: int = 16) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for n in range(count):
        (folder / f"acme_{NAMES[n % len(NAMES)]}_{n}.sh").write_text(personal_script(n))
    return folder
