"""Loading a scenario: read the file (size-capped, UTF-8), parse the YAML (no alias
bombs, no duplicate keys), validate the fields, expand, cross-check; every error names
file, line and field and says how to fix it, before anything is created.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from p2plab.topology.checks import CrossReferenceErrors, cross_check
from p2plab.topology.expansion import expand
from p2plab.topology.overrides import Override, OverrideError, apply_overrides, override_for
from p2plab.topology.scenario import Scenario
from p2plab.topology.schema import STEP_TAGS, ScenarioFile
from p2plab.topology.yaml_source import (
    YamlSourceError,
    field_path,
    line_for,
    line_index,
    parse_yaml,
    read_text,
)
from pydantic import ValidationError


class ScenarioError(Exception):
    """A scenario that cannot run; the message names file, line and field."""


def scenario_from_data(data: dict[str, Any]) -> Scenario:
    """A scenario built in code (a matrix's labs): the same checks as a file's, with
    errors as plain messages."""
    try:
        scenario = expand(ScenarioFile.model_validate(data))
        problems = cross_check(scenario)
    except CrossReferenceErrors as exc:
        problems = exc.errors
    except ValidationError as exc:
        raise ScenarioError(str(exc)) from None
    if problems:
        raise ScenarioError("; ".join(f"{field_path(w)}: {m}" for w, m in problems))
    return scenario



@dataclass(frozen=True)
class Origins:
    """Where each field came from: a line of the file, or a command-line override."""

    source: str
    lines: dict[tuple[Any, ...], int]
    overridden: dict[tuple[Any, ...], Override] = field(default_factory=dict)

    def where(self, loc: tuple[Any, ...]) -> str:
        override = override_for(loc, self.overridden)
        if override is not None:
            return f"--set {override.text}"
        return f"{self.source}:{line_for(self.lines, loc)}"


def parse_scenario_file(text: str, source: str = "<scenario>",
                        overrides: Sequence[Override] = ()) -> tuple[ScenarioFile, Origins]:
    """The file's fields (with ``overrides`` applied), each checked, and where each came
    from; nothing expanded (what a report needs from the scenario as run: expectations)."""
    data, origins = _scenario_data(text, source, overrides)
    try:
        return ScenarioFile.model_validate(data), origins
    except ValidationError as exc:
        raise ScenarioError("\n".join(field_errors(exc, origins))) from None


def _scenario_data(text: str, source: str, overrides: Sequence[Override]
                   ) -> tuple[dict[str, Any], Origins]:
    try:
        document = parse_yaml(text, source)
    except YamlSourceError as exc:
        raise ScenarioError(str(exc)) from None
    data, root = document.data, document.root
    if not isinstance(data, dict):
        raise ScenarioError(f"{source}:1: a scenario is a YAML mapping with name, nodes, ...")
    try:
        data, overridden = apply_overrides(data, list(overrides))
    except OverrideError as exc:
        raise ScenarioError(f"{exc} ({source})") from None
    return data, Origins(source, line_index(root), overridden)


def text_as_run(text: str, source: str, overrides: Sequence[Override]) -> str:
    """The scenario as it ran: the file itself, or with overrides the document they made
    (a comment names the file and each override), for the results folder."""
    if not overrides:
        return text
    data, _origins = _scenario_data(text, source, overrides)
    head = [f"# {source} as run, with:"] + [f"#   --set {o.text}" for o in overrides]
    return "\n".join(head) + "\n" + yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def load_scenario_file(path: Path) -> ScenarioFile:
    try:
        text = read_text(path)
    except YamlSourceError as exc:
        raise ScenarioError(str(exc)) from None
    return parse_scenario_file(text, str(path))[0]


def parse_scenario(text: str, source: str = "<scenario>",
                   overrides: Sequence[Override] = ()) -> Scenario:
    file, origins = parse_scenario_file(text, source, overrides)
    try:
        scenario = expand(file)
        problems = cross_check(scenario)
    except CrossReferenceErrors as exc:
        problems = exc.errors
    if problems:
        lines = list(dict.fromkeys(f"{origins.where(where)}: {field_path(where)}: {message}"
                                   for where, message in problems))
        if overrides:
            lines.append("(the scenario as changed by " + ", ".join(
                f"--set {o.text}" for o in overrides) + ")")
        raise ScenarioError("\n".join(lines)) from None
    scenario.text = text_as_run(text, source, overrides)
    scenario.overrides = tuple(o.text for o in overrides)
    scenario.origins = origins
    return scenario


def field_errors(exc: ValidationError, origins: Origins) -> list[str]:
    """pydantic's errors as ``FILE:LINE: FIELD: message and fix`` lines."""
    lines = []
    entries = []
    for err in exc.errors():
        loc = _strip_union_tags(tuple(err["loc"]))
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = f"unknown field {loc[-1]!r}: remove it or check its spelling"
        elif err["type"] == "missing":
            message = f"required field {loc[-1]!r} is missing"
        elif err["type"] == "finite_number":
            message = f"{err['input']!r} is not a finite number: give a plain number"
        elif err["type"] in ("greater_than", "greater_than_equal", "less_than",
                             "less_than_equal"):
            message = f"{err['input']!r} is out of range: {message[0].lower()}{message[1:]}"
        entries.append((loc, message, err["type"]))
    for loc, message, kind in entries:
        # A union (a name or a mapping) fails once per member: keep the member that
        # got furthest, not "Input should be a valid string" for the other one.
        if kind.endswith("_type") and any(
                other[:len(loc)] == loc and other_kind != kind
                for other, _, other_kind in entries if (other, other_kind) != (loc, kind)):
            continue
        lines.append(f"{origins.where(loc)}: {field_path(loc)}: {message}")
    return list(dict.fromkeys(lines))


def _strip_union_tags(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """pydantic puts union member names ('DialTarget', 'str', step tags) into locations."""
    out: list[Any] = []
    for i, part in enumerate(loc):
        if isinstance(part, str) and (part[:1].isupper() or part in ("str", "list[str]")
                                      or "[" in part):
            continue
        if part in STEP_TAGS and i >= 2 and loc[i - 2] == "timeline":
            continue
        out.append(part)
    return tuple(out)


def load_scenario(path: Path, overrides: Sequence[Override] = ()) -> Scenario:
    try:
        text = read_text(path)
    except YamlSourceError as exc:
        raise ScenarioError(str(exc)) from None
    return parse_scenario(text, str(path), overrides)


# The bug gallery: each file reproduces one documented upstream behaviour.
BUGS_FOLDER = "bugs"


def shipped_files(scenarios_dir: Path) -> list[Path]:
    """Every shipped scenario file: the scenarios, then the bug gallery's."""
    return (sorted(scenarios_dir.glob("*.yaml"))
            + sorted((scenarios_dir / BUGS_FOLDER).glob("*.yaml")))


def find_scenario(name_or_path: str, scenarios_dir: Path) -> Path:
    """Accept a path, or the name of a shipped scenario (``nat-relay``, or a bug
    gallery entry's, ``rust-libp2p-5170``)."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.exists():
            raise ScenarioError(f"{path}: no such scenario file")
        return path
    for folder in (scenarios_dir, scenarios_dir / BUGS_FOLDER):
        candidate = folder / f"{name_or_path}.yaml"
        if candidate.exists():
            return candidate
    known = sorted(p.stem for p in shipped_files(scenarios_dir))
    raise ScenarioError(
        f"no scenario named {name_or_path!r}; shipped: {', '.join(known) or 'none'}"
    )
