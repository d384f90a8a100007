"""Editor settings, parsed once into dataclasses with defaults.

Editors send them as `initializationOptions` (the object below) and in
`workspace/didChangeConfiguration` (the same object under a "bashlsp" key).
A bad value is reported and replaced by its default; it never stops the server.

    {
      "device": "auto",            // auto | cpu | cuda | mps
      "store": "",                 // checkpoint store directory ("" = platform default)
      "checkpoint": "",            // a checkpoint directory or store id to pin ("" = follow the store)
      "maxTokens": 48,             // most tokens for a completion / inline completion
      "temperature": 0.0,          // 0 = greedy
      "topP": 0.95,
      "completion": {"enable": true, "alternatives": 3},  // model items in the popup (1-5)
      "inlineCompletion": {"enable": true, "multiline": true},
      "generate": {"enable": true, "maxTokens": 128, "samples": 4},
      "shellcheck": {"enable": true},
      "context": {"enable": true}  // chunks of the workspace's other scripts and recent edits in the prompt
    }
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, get_type_hints

from ..model import generation
from ..model.device import DEVICE_CHOICES


@dataclass
class CompletionSettings:
    enable: bool = True
    # Model items when the popup opens, the best first. At temperature 0 the first is the greedy
    # line and the others start with the next likeliest tokens (each with at least
    # model/engine/stops.ALTERNATIVE_PROB) and go on greedily; above 0 they are sampled. Requests
    # that refine an open popup as the user types (triggerKind 3) get the best line only.
    alternatives: int = 3


@dataclass
class InlineCompletionSettings:
    enable: bool = True
    multiline: bool = True  # ghost text may span lines (up to the end of the block)


@dataclass
class GenerateSettings:
    enable: bool = True
    maxTokens: int = generation.MAX_TOKENS
    samples: int = generation.SAMPLES  # sampled scripts tried when the first does not pass `bash -n`


@dataclass
class ShellcheckSettings:
    enable: bool = True


@dataclass
class ContextSettings:
    # Completions read the project: chunks of the workspace's other shell scripts and of recently
    # edited documents go ahead of the prompt (server/context.py). Off: only the document itself.
    enable: bool = True


@dataclass
class Settings:
    device: str = "auto"
    store: str = ""
    checkpoint: str = ""
    maxTokens: int = 48
    temperature: float = 0.0
    topP: float = 0.95
    completion: CompletionSettings = field(default_factory=CompletionSettings)
    inlineCompletion: InlineCompletionSettings = field(default_factory=InlineCompletionSettings)
    generate: GenerateSettings = field(default_factory=GenerateSettings)
    shellcheck: ShellcheckSettings = field(default_factory=ShellcheckSettings)
    context: ContextSettings = field(default_factory=ContextSettings)


# Checks beyond the type: (predicate, what a valid value looks like).
_CONSTRAINTS: dict[str, tuple[Any, str]] = {
    "device": (lambda v: v in DEVICE_CHOICES, f"one of {', '.join(DEVICE_CHOICES)}"),
    "maxTokens": (lambda v: 1 <= v <= 512, "an integer from 1 to 512"),
    "temperature": (lambda v: 0.0 <= v <= 2.0, "a number from 0 to 2"),
    "topP": (lambda v: 0.0 < v <= 1.0, "a number in (0, 1]"),
    "generate.maxTokens": (lambda v: 1 <= v <= 1024, "an integer from 1 to 1024"),
    "generate.samples": (lambda v: 1 <= v <= 16, "an integer from 1 to 16"),
    "completion.alternatives": (lambda v: 1 <= v <= 5, "an integer from 1 to 5"),
}


def _coerce(value: Any, kind: type) -> Any:
    """The value as `kind`, or raise TypeError. JSON has no int/float split, so ints pass as floats."""
    if kind is bool:
        if isinstance(value, bool):
            return value
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif kind is str:
        if isinstance(value, str):
            return value
    raise TypeError


def _parse_into(cls: type, data: Any, prefix: str, problems: list[str]) -> Any:
    result = cls()
    if data is None:
        return result
    if not isinstance(data, dict):
        problems.append(f"setting {prefix.rstrip('.') or 'bashlsp'} must be an object; using defaults")
        return result
    hints = get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    for key in sorted(set(data) - known):
        problems.append(f"unknown setting {prefix}{key} ignored")
    for f in fields(cls):
        if f.name not in data:
            continue
        kind, value, name = hints[f.name], data[f.name], prefix + f.name
        if is_dataclass(kind):
            setattr(result, f.name, _parse_into(kind, value, name + ".", problems))
            continue
        default = getattr(result, f.name)
        try:
            value = _coerce(value, kind)
        except TypeError:
            problems.append(f"setting {name} must be a {kind.__name__}, got {value!r}; using {default!r}")
            continue
        check = _CONSTRAINTS.get(name)
        if check and not check[0](value):
            problems.append(f"setting {name} must be {check[1]}, got {value!r}; using {default!r}")
            continue
        setattr(result, f.name, value)
    return result


def parse_settings(data: Any) -> tuple[Settings, list[str]]:
    """Settings from an editor's JSON object, and a message for each value that was ignored."""
    problems: list[str] = []
    return _parse_into(Settings, data, "", problems), problems


def settings_schema(cls: type = Settings, prefix: str = "") -> dict[str, Any]:
    """Flat {"completion.enable": True, ...} of every setting and its default, for editor manifests."""
    flat: dict[str, Any] = {}
    instance = cls()
    for f in fields(cls):
        value = getattr(instance, f.name)
        if is_dataclass(value):
            flat.update(settings_schema(type(value), prefix + f.name + "."))
        else:
            flat[prefix + f.name] = value
    return flat
