"""Which implementations a lab can run: the built-in declarations, the ones beside the
scenario (``*.impl.yaml``) and the ones given with ``--register FILE``; and what a
scenario's ``impl: NAME[@VERSION]`` names among them."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from p2plab.compose.impls.declaration import (
    DECLARATION_FILE,
    NEIGHBOUR_GLOB,
    Capability,
    Declaration,
    DeclarationError,
    load_declaration,
)
from p2plab.topology.loading import ScenarioError
from p2plab.topology.scenario import Scenario
from p2plab.topology.schema import DialTarget
from p2plab.topology.yaml_source import field_path

from p2plab.resources import package_dir

# The built-in nodes' declarations (package, folder inside it).
BUILT_IN = (("p2plab.node", "."), ("p2plab.node_rust", "."),
            ("p2plab.node_rust", "libp2p-0.53"), ("p2plab.node_rust", "libp2p-0.53-relay-0.17.1"))


# Declaration files given on the command line (--register), separated by os.pathsep;
# an environment variable, so a suite's, sweep's or matrix's every lab sees them.
REGISTER_ENV = "P2PLAB_IMPLS"
RELEASE = re.compile(r"[0-9]+(\.[0-9]+)*")  # a plain release number, no suffix


class UnknownImplementation(ValueError):
    """A spec that names no registered implementation (the message says what is)."""


def built_in_files() -> list[Path]:
    return [package_dir(package) / folder / DECLARATION_FILE for package, folder in BUILT_IN]


@dataclass
class Registry:
    """Declarations by key (``NAME@VERSION``)."""

    declarations: dict[str, Declaration] = field(default_factory=dict)

    @classmethod
    def load(cls, extra: Iterable[Path] = (), scenario: Path | None = None) -> Registry:
        """The built-ins, then ``*.impl.yaml`` beside ``scenario``, then the files of
        ``P2PLAB_IMPLS`` (``--register``), then ``extra``."""
        registry = cls()
        files = built_in_files()
        if scenario is not None:
            files += sorted(scenario.resolve().parent.glob(NEIGHBOUR_GLOB))
        files += [Path(p) for p in os.environ.get(REGISTER_ENV, "").split(os.pathsep) if p]
        for path in [*files, *extra]:
            if path.is_dir():
                path = path / DECLARATION_FILE
            if not path.is_file():
                raise DeclarationError(f"{path}: no such declaration file (an "
                                       f"implementation is declared in a {DECLARATION_FILE})")
            registry.add(load_declaration(path))
        return registry

    def add(self, declaration: Declaration) -> None:
        known = self.declarations.get(declaration.key)
        if known is not None and known.path != declaration.path:
            raise DeclarationError(
                f"{declaration.path}:1: {declaration.key} is declared already by "
                f"{known.path}: give this one another name or version")
        defaults = [d for d in self.of(declaration.name) if d.file.default]
        if declaration.file.default and defaults and defaults[0].path != declaration.path:
            raise DeclarationError(
                f"{declaration.path}: default: {declaration.name} has a default version "
                f"already ({defaults[0].key}, {defaults[0].path}): remove default: true")
        self._check_binary(declaration)
        self.declarations[declaration.key] = declaration

    def _check_binary(self, declaration: Declaration) -> None:
        """Builds sharing a cargo target folder must not build one binary name: each
        would overwrite the other's (and rebuild it at every lab)."""
        cargo = declaration.file.build.cargo
        if cargo is None:
            return
        for other in self.declarations.values():
            theirs = other.file.build.cargo
            if (other.key != declaration.key and theirs is not None
                    and other.cargo_target == declaration.cargo_target
                    and theirs.binary == cargo.binary):
                loc = ("build", "cargo", "binary")
                where = (declaration.origins.where(loc) if declaration.origins
                         else str(declaration.path))
                raise DeclarationError(
                    f"{where}: build.cargo.binary: {cargo.binary!r} is built "
                    f"into the target folder {declaration.cargo_target!r} by "
                    f"{other.key} ({other.path}) too: give the [[bin]] another name or "
                    "drop build.cargo.target")

    def of(self, name: str) -> list[Declaration]:
        return [d for d in self.declarations.values() if d.name == name]

    def names(self) -> list[str]:
        """Every spec a scenario may give, for error messages and ``p2plab impls``."""
        out = []
        for name in sorted({d.name for d in self.declarations.values()}):
            out.append(name)
            out += sorted(d.key for d in self.of(name))
        return out

    def resolve(self, spec: str) -> Declaration:
        """``NAME`` (its only or default version), ``NAME@VERSION`` or a prefix of the
        version by whole components (``rust@0.53`` is 0.53.2)."""
        name, _, wanted = spec.partition("@")
        candidates = self.of(name)
        if not candidates:
            raise UnknownImplementation(
                f"no implementation named {name!r} is registered (known: "
                f"{', '.join(self.names())}); declare yours in a {DECLARATION_FILE} and "
                f"pass --register FILE, or put NAME{NEIGHBOUR_GLOB[1:]} beside the scenario")
        if not wanted:
            defaults = [d for d in candidates if d.file.default]
            if len(candidates) == 1 or len(defaults) == 1:
                return candidates[0] if len(candidates) == 1 else defaults[0]
            raise UnknownImplementation(
                f"{name!r} has several versions and none is the default: name one "
                f"({', '.join(sorted(d.key for d in candidates))})")
        exact = ([d for d in candidates if d.version == wanted]
                 or [d for d in candidates if d.file.library.version == wanted])
        matches = exact or [d for d in candidates if _prefix(wanted, d.version)]
        # A prefix names a release, not a variant of one (0.53.2+relay-0.17.1 is named
        # whole): with several matches, the only plain release among them wins.
        plain = [d for d in matches if RELEASE.fullmatch(d.version)]
        if len(matches) == 1 or (not exact and len(plain) == 1):
            return matches[0] if len(matches) == 1 else plain[0]
        versions = ", ".join(sorted(d.key for d in candidates))
        if not matches:
            raise UnknownImplementation(f"{name} has no version {wanted!r} (registered: "
                                        f"{versions}); register it with --register FILE")
        raise UnknownImplementation(f"{spec!r} matches {len(matches)} versions ({versions}): "
                                    "give the whole version")


def _prefix(wanted: str, version: str) -> bool:
    parts, have = wanted.split("."), version.split(".")
    return have[:len(parts)] == parts


def impl_fields(scenario: Scenario) -> list[tuple[tuple[Any, ...], str]]:
    """Where the scenario file names implementations, and what it names there."""
    fields: list[tuple[tuple[Any, ...], str]] = [(("impl",), scenario.file.impl)]
    fields += [(("nodes", i, "impl"), spec.impl) for i, spec in enumerate(scenario.file.node_specs)
               if spec.impl is not None]
    return fields


def resolve_scenario(registry: Registry, scenario: Scenario) -> dict[str, Declaration]:
    """The declaration of every implementation the scenario's nodes run, by the spec the
    scenario gives; an unknown one is an error at its line of the file."""
    problems = []
    for loc, spec in impl_fields(scenario):
        try:
            registry.resolve(spec)
        except UnknownImplementation as exc:
            where = scenario.origins.where(loc) if scenario.origins else scenario.name
            problems.append(f"{where}: {field_path(loc)}: {exc}")
    if not problems:
        problems = _missing_capabilities(registry, scenario)
    if problems:
        raise ScenarioError("\n".join(dict.fromkeys(problems)))
    used = {scenario.impl_of(node) for node in scenario.nodes}
    return {spec: registry.resolve(spec) for spec in sorted(used)}


def _missing_capabilities(registry: Registry, scenario: Scenario) -> list[str]:
    """A node asked for a part of the contract its implementation does not claim (a
    relay hop, a relay client, DCUtR): an error at the field that asks for it."""
    problems = []
    for i, spec in enumerate(scenario.file.node_specs):
        declaration = registry.resolve(scenario.impl_of(spec))
        relayed = bool(spec.relay) or any(isinstance(d, DialTarget) and d.via for d in spec.dial)
        asks: list[tuple[Capability, str, str]] = []
        if spec.role == "relay":
            asks.append(("relay-hop", "role", "make another node the relay"))
        if spec.relay:
            asks.append(("relay-client", "relay", "drop its relay: list"))
        elif relayed:
            asks.append(("relay-client", "dial", "dial without via:"))
        if relayed and spec.holepunch:
            asks.append(("holepunch", "holepunch", "set holepunch: false (its relayed "
                         "connections stay relayed)"))
        limits = spec.relay_limits_flag() if spec.role == "relay" else None
        lacking = [k for k in (limits.asks() if limits else ()) if k not in
                   declaration.file.relay_limits]
        if lacking:
            loc = ("nodes", i, "relay_limits")
            where = scenario.origins.where(loc) if scenario.origins else scenario.name
            problems.append(
                f"{where}: {field_path(loc)}: {declaration.key}'s relay does not honour "
                f"{', '.join(lacking)} (its declaration {declaration.path} lists "
                f"{', '.join(declaration.file.relay_limits) or 'none'} in relay_limits): "
                "drop it, or run this relay on an implementation that does (rust has all)")
        for capability, key, fix in asks:
            if declaration.lacks({capability}):
                loc = ("nodes", i, key)
                where = scenario.origins.where(loc) if scenario.origins else scenario.name
                problems.append(
                    f"{where}: {field_path(loc)}: {declaration.key} does not implement "
                    f"{capability} (its declaration {declaration.path} claims "
                    f"{', '.join(declaration.file.capabilities) or 'none'} in capabilities): "
                    f"{fix}, or give this node an implementation that does")
    return problems
