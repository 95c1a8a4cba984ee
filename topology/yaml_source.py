"""Reading scenario and matrix YAML safely, with a line for every key.

PyYAML's safe loader still accepts what a scenario never needs and a hostile file can
use: aliases that expand exponentially (300 bytes → gigabytes once walked), aliases
that contain themselves, and duplicate keys (a second ``expect:`` silently replaces the
first). Each is refused here with the file and line, before anything walks the data.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

# A scenario of 10,000 nodes written out in full is about 60,000 values; anything far
# above that is an alias bomb, not a lab.
MAX_VALUES = 200_000
MAX_BYTES = 4 * 1024 * 1024


class YamlSourceError(ValueError):
    """A file that is not acceptable YAML for p2plab; the message names file and line."""


@dataclass(frozen=True)
class YamlDocument:
    data: Any
    root: yaml.Node


def read_text(path: Path) -> str:
    """The file as UTF-8 text, or an error naming the file and where the bad bytes are."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise YamlSourceError(f"{path}: cannot read the scenario ({exc.strerror})") from None
    if len(raw) > MAX_BYTES:
        raise YamlSourceError(f"{path}: {len(raw)} bytes; a scenario is at most "
                              f"{MAX_BYTES // (1024 * 1024)} MiB (use count: for big groups)")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise YamlSourceError(f"{path}:{line}: not UTF-8 text (byte {exc.start}: "
                              f"{raw[exc.start:exc.start + 1]!r}); save the file as UTF-8"
                              ) from None


def parse_yaml(text: str, source: str) -> YamlDocument:
    """One YAML document, checked for alias bombs, self-containing aliases and duplicate
    keys before it is turned into Python values."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except RecursionError:
        raise YamlSourceError(f"{source}: values nested hundreds of levels deep; a scenario "
                              "needs a handful of levels") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise YamlSourceError(f"{source}{line}: not valid YAML: {problem}") from None
    if root is None:
        raise YamlSourceError(f"{source}:1: the file is empty")
    _check_structure(root, source)
    try:
        data = yaml.SafeLoader(text).get_single_data()
    except yaml.YAMLError as exc:  # a tag or value the safe loader cannot build
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise YamlSourceError(f"{source}{line}: not valid YAML: "
                              f"{getattr(exc, 'problem', None) or exc}") from None
    return YamlDocument(data, root)


def line_index(node: yaml.Node, path: tuple[Any, ...] = ()) -> dict[tuple[Any, ...], int]:
    """Map every key path in a YAML document to its (1-based) line."""
    index = {path: node.start_mark.line + 1}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            child = path + (key.value,)
            index[child] = key.start_mark.line + 1
            index.update({k: v for k, v in line_index(value, child).items() if k != child})
    elif isinstance(node, yaml.SequenceNode):
        for i, value in enumerate(node.value):
            index.update(line_index(value, path + (i,)))
    return index


def line_for(index: dict[tuple[Any, ...], int], loc: tuple[Any, ...]) -> int:
    loc = tuple(loc)
    while loc and loc not in index:
        loc = loc[:-1]
    return index.get(loc, 1)


def field_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _check_structure(root: yaml.Node, source: str) -> None:
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def size(node: yaml.Node, path: tuple[Any, ...]) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in open_nodes:
            raise YamlSourceError(f"{source}:{node.start_mark.line + 1}: an alias refers to "
                                  "the value that contains it (a recursive alias); write "
                                  "the value out instead")
        open_nodes.add(key)
        total = 1
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for k, v in node.value:
                if isinstance(k, yaml.ScalarNode) and k.tag != "tag:yaml.org,2002:merge":
                    if k.value in seen:
                        raise YamlSourceError(
                            f"{source}:{k.start_mark.line + 1}: "
                            f"{field_path(path + (k.value,))}: duplicate key {k.value!r} "
                            f"(first at line {seen[k.value]}): YAML would keep only the "
                            "second; merge the two into one")
                    seen[k.value] = k.start_mark.line + 1
                total += size(k, path) + size(v, path + (k.value,))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                total += size(item, path + (i,))
        open_nodes.discard(key)
        if total > MAX_VALUES:
            raise YamlSourceError(f"{source}:{node.start_mark.line + 1}: this value expands "
                                  f"to more than {MAX_VALUES:,} values through aliases (an "
                                  "alias bomb?); write groups with count: instead")
        sizes[key] = total
        return total

    size(root, ())
