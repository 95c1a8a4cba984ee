"""Command-line overrides of scenario fields: ``--set PATH=VALUE`` and ``--seed N``.

An override changes the scenario's data before it is validated, so it is checked exactly
like the file, and an error in an overridden field names the override, not a line of the
file. A path is dotted: mapping keys, list indices (``lans.0.link`` or ``lans[0].link``)
or, in a list of named items (LANs, node groups, timeline steps with ``name``), the
item's name (``nodes.peer.count``). VALUE is YAML: ``10``, ``symmetric``, ``null``,
``[a, b]``, ``{latency_ms: 20}``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import yaml


class OverrideError(ValueError):
    """An override that cannot apply; the message names it and says how to fix it."""


@dataclass(frozen=True)
class Override:
    text: str  # as the user wrote it, for messages and the results folder
    path: tuple[str | int, ...]
    value: Any


_INDEX = re.compile(r"^([^\[\]]*)((?:\[\d+\])*)$")


def _split_path(path_text: str, flag_text: str) -> tuple[str | int, ...]:
    parts: list[str | int] = []
    for word in path_text.split("."):
        match = _INDEX.match(word)
        if not word or match is None:
            raise OverrideError(f"{flag_text}: {path_text!r} is not a field path: write "
                                "dotted keys, indices or names, e.g. nodes.peer.count or "
                                "lans[0].link.latency_ms")
        if match.group(1):
            parts.append(int(match.group(1)) if match.group(1).isdigit() else match.group(1))
        parts += [int(i) for i in re.findall(r"\[(\d+)\]", match.group(2))]
    return tuple(parts)


def parse_override(text: str) -> Override:
    """``PATH=VALUE`` as given to ``--set``."""
    flag_text = f"--set {text}"
    path_text, sep, value_text = text.partition("=")
    if not sep or not path_text.strip():
        raise OverrideError(f"{flag_text}: write PATH=VALUE, e.g. --set nodes.peer.count=20")
    try:
        value = yaml.safe_load(value_text) if value_text.strip() else ""
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or exc
        raise OverrideError(f"{flag_text}: the value is not valid YAML ({problem}); quote "
                            "it for the shell, e.g. --set 'path=[a, b]'") from None
    return Override(text, _split_path(path_text.strip(), flag_text), value)


def seed_override(seed: int) -> Override:
    return Override(f"seed={seed}", ("seed",), seed)


def _step(container: Any, key: str | int, override: Override, done: tuple[Any, ...]
          ) -> str | int:
    """The concrete key (a list index for a name) of ``key`` in ``container``."""
    where = _dotted(done) or "the scenario"
    if isinstance(container, list):
        if isinstance(key, int):
            if not 0 <= key < len(container):
                raise OverrideError(f"--set {override.text}: {where} has {len(container)} "
                                    f"items (indices 0-{len(container) - 1}), not {key}")
            return key
        names = [item.get("name") for item in container if isinstance(item, dict)]
        if key in names:
            return names.index(key)
        raise OverrideError(f"--set {override.text}: no item named {key!r} in {where}; "
                            f"named: {', '.join(str(n) for n in names if n) or 'none'} "
                            "(or give an index)")
    if isinstance(container, dict):
        if isinstance(key, int):
            raise OverrideError(f"--set {override.text}: {where} is a mapping; give a key, "
                                f"not the index {key}")
        return key
    raise OverrideError(f"--set {override.text}: {where} is a single value "
                        f"({container!r}), it has no field {key!r}")


def _dotted(path: tuple[Any, ...]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _unshared(value: Any) -> Any:
    """A copy in which nothing is shared: YAML aliases (``*link``) load as one object in
    several places, and an override of one place must not change the others."""
    if isinstance(value, dict):
        return {key: _unshared(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_unshared(item) for item in value]
    return value


def apply_overrides(data: dict[str, Any], overrides: list[Override]
                    ) -> tuple[dict[str, Any], dict[tuple[Any, ...], Override]]:
    """A copy of ``data`` with every override applied in order, and each override's
    location in the data (names resolved to indices), for naming it in errors. A missing
    mapping on the way is made, so a field the file leaves at its default can be set."""
    result = _unshared(data) if overrides else data
    locations: dict[tuple[Any, ...], Override] = {}
    for override in overrides:
        container: Any = result
        done: tuple[Any, ...] = ()
        *head, last = override.path
        for key in head:
            concrete = _step(container, key, override, done)
            if isinstance(container, dict) and container.get(concrete) is None:
                container[concrete] = {}
            container = container[concrete]
            done += (concrete,)
        concrete = _step(container, last, override, done)
        container[concrete] = _unshared(override.value)
        locations[done + (concrete,)] = override
    return result, locations


def override_for(loc: tuple[Any, ...], locations: dict[tuple[Any, ...], Override]
                 ) -> Override | None:
    """The override that set ``loc`` or a field containing it (the latest, if several)."""
    found = None
    for where, override in locations.items():
        if tuple(loc[:len(where)]) == where:
            found = override
    return found


def implementation_overrides(names_by_path: dict[tuple[str | int, ...], str],
                             spec: str) -> list[Override]:
    """Overrides that run ``spec`` (``rust@0.53``) wherever the scenario names the same
    implementation (``rust``, ``rust@0.57.1``): how one scenario is run across versions.
    ``names_by_path``: each field that names an implementation, and what it names."""
    name = spec.partition("@")[0]
    out = []
    for path, given in names_by_path.items():
        if given.partition("@")[0] == name:
            text = ".".join(str(p) for p in path) + f"={spec}"
            out.append(Override(text, path, spec))
    if not out:
        named = sorted(set(names_by_path.values()))
        raise OverrideError(f"--impls {spec}: no node of this scenario runs {name!r} (it "
                            f"runs {', '.join(named)}): list versions of those")
    return out
