"""One implementation's declaration file (``p2plab-impl.yaml``): how it is built, how it
is started, and which libp2p release it is on. The built-in nodes are declared the same
way as a user's (``node/p2plab-impl.yaml``, ``node-rust/p2plab-impl.yaml``, ...).

Errors name the file, line and field, as a scenario's do.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from p2plab.topology.loading import Origins, field_errors
from p2plab.topology.yaml_source import (
    YamlSourceError,
    field_path,
    line_index,
    parse_yaml,
    read_text,
)
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from p2plab.relay_limits import KEYS as LIMIT_KEYS
from p2plab.relay_limits import UNLIMITED

DECLARATION_FILE = "p2plab-impl.yaml"
# Beside a scenario, any file named like this registers one more implementation.
NEIGHBOUR_GLOB = "*.impl.yaml"
NAME = re.compile(r"[a-z][a-z0-9_-]{0,39}")  # fullmatch
VERSION = re.compile(r"[0-9A-Za-z][0-9A-Za-z.+_-]{0,39}")
TARGET = re.compile(r"[a-z][a-z0-9._@+-]{0,79}")
PROGRAM = "{program}"
# The contract's parts an implementation may leave out (docs/reference/node-contract.md):
# a circuit relay v2 hop (--role relay), its client (--relay, dials through a relay) and
# DCUtR hole punching. A scenario that needs one its nodes' implementation lacks is
# refused at validation; `p2plab conform` lists those clauses as not claimed.
Capability = Literal["relay-hop", "relay-client", "holepunch"]
CAPABILITIES: tuple[Capability, ...] = ("relay-hop", "relay-client", "holepunch")


class DeclarationError(ValueError):
    """A declaration that cannot be used; the message names file, line and field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Library(_Strict):
    """The libp2p the implementation is built on, as its ``--version`` line names it."""

    name: str = Field(description="e.g. rust-libp2p, py-libp2p, go-libp2p")
    version: str = Field(description="the exact release, e.g. 0.53.2")


class CargoBuild(_Strict):
    """A cargo project built with ``cargo build --release --locked``."""

    manifest: str = Field(description="Cargo.toml, relative to the declaration")
    binary: str = Field(description="the [[bin]] name cargo builds")
    sources: list[str] = Field(default_factory=lambda: ["src"], description=(
        "folders (relative to the manifest) whose files the build depends on, beside "
        "Cargo.toml and Cargo.lock: the cache key"))
    target: str | None = Field(default=None, description=(
        "share a cargo target folder with other builds (its name under the cache, e.g. "
        "rust, the built-in Rust node's): the crates both lock at the same version "
        "compile once; each build's binary needs a name of its own there; default: a "
        "folder of its own (NAME@VERSION)"))

    _target = field_validator("target")(classmethod(lambda cls, v: v if v is None else _match(
        TARGET, v, "a target folder name such as rust (lower-case letters, digits, '.', "
        "'@', '+', '-', '_')")))


class PythonBuild(_Strict):
    """A module run by the lab's own Python (on the host and in the node image)."""

    module: str = Field(description="run as python -m MODULE")
    package: str = Field(description="the distribution whose version is the library's, "
                         "checked against library.version")


class Build(_Strict):
    cargo: CargoBuild | None = None
    python: PythonBuild | None = None

    def kind(self) -> Literal["cargo", "python"]:
        return "cargo" if self.cargo is not None else "python"


class DeclarationFile(_Strict):
    name: str = Field(description="what a scenario's impl: names (lower case)")
    version: str = Field(description="what impl: NAME@VERSION names; a prefix of it "
                         "(rust@0.53 for 0.53.2) names it too")
    default: bool = Field(default=False, description="NAME alone means this version")
    description: str = ""
    library: Library
    build: Build
    run: list[str] = Field(default_factory=lambda: [PROGRAM], description=(
        "the command before the contract's flags; {program} is what the build made"))
    capabilities: list[Capability] = Field(
        default_factory=lambda: list(CAPABILITIES), description=(
            "the contract's optional parts it implements: relay-hop, relay-client, "
            "holepunch; default: all three ([] for a node that only chats)"))

    relay_limits: list[str] = Field(default_factory=list, description=(
        "the --relay-limits its relay hop honours: unlimited and the keys of "
        "p2plab/relay_limits.py (circuit-bytes, circuit-duration, ...); default none: "
        "its relays run as its library ships them"))

    @field_validator("relay_limits")
    @classmethod
    def _limit_keys(cls, keys: list[str]) -> list[str]:
        known = (UNLIMITED, *LIMIT_KEYS)
        unknown = [k for k in keys if k not in known]
        if unknown:
            raise ValueError(f"{', '.join(map(repr, unknown))}: not a --relay-limits key; "
                             f"known: {', '.join(known)}")
        return keys

    _name = field_validator("name")(classmethod(lambda cls, v: _match(NAME, v, (
        "a lower-case name of letters, digits, - and _ (at most 40), e.g. my-node"))))
    _version = field_validator("version")(classmethod(lambda cls, v: _match(VERSION, v, (
        "a version of letters, digits, '.', '+', '-' and '_', e.g. 0.53.2"))))

    @field_validator("build")
    @classmethod
    def _one_build(cls, build: Build) -> Build:
        given = [kind for kind in ("cargo", "python") if getattr(build, kind) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of build.cargo (a cargo project) or "
                             f"build.python (a module); here: {given or 'none'}")
        return build

    @field_validator("run")
    @classmethod
    def _run_has_program(cls, run: list[str]) -> list[str]:
        if not run or run.count(PROGRAM) != 1:
            raise ValueError(f"run must contain {PROGRAM!r} exactly once (the built "
                             "program), e.g. [\"{program}\"]")
        return run


def _match(pattern: re.Pattern[str], value: str, what: str) -> str:
    if not pattern.fullmatch(value):
        raise ValueError(f"{value!r} is not {what}")
    return value


@dataclass(frozen=True)
class Declaration:
    """A checked declaration and where it lives (paths in it are relative to ``folder``)."""

    file: DeclarationFile
    path: Path
    origins: Origins | None = field(default=None, compare=False)  # each field's line

    @property
    def folder(self) -> Path:
        return self.path.parent

    @property
    def key(self) -> str:
        """``NAME@VERSION``: how results, caches and programs name it."""
        return f"{self.file.name}@{self.file.version}"

    @property
    def name(self) -> str:
        return self.file.name

    @property
    def cargo_target(self) -> str | None:
        """The cargo target folder's name under the cache (its own: ``NAME@VERSION``)."""
        cargo = self.file.build.cargo
        if cargo is None:
            return None
        return cargo.target or self.key

    @property
    def version(self) -> str:
        return self.file.version

    def library_text(self) -> str:
        return f"{self.file.library.name} {self.file.library.version}"

    def lacks(self, needed: set[Capability]) -> list[Capability]:
        """Which of ``needed`` the declaration does not claim, in the contract's order."""
        return [c for c in CAPABILITIES if c in needed and c not in self.file.capabilities]


def load_declaration(path: Path) -> Declaration:
    """Read and check one declaration file; every error names file, line and field."""
    try:
        text = read_text(path)
        document = parse_yaml(text, str(path))
    except YamlSourceError as exc:
        raise DeclarationError(str(exc)) from None
    if not isinstance(document.data, dict):
        raise DeclarationError(f"{path}:1: a declaration is a YAML mapping with name, "
                               "version, library, build (see docs/guide/implementations.md)")
    origins = Origins(str(path), line_index(document.root))
    try:
        file = DeclarationFile.model_validate(document.data)
    except ValidationError as exc:
        raise DeclarationError("\n".join(field_errors(exc, origins))) from None
    declaration = Declaration(file, path.resolve(), origins)
    problems = _file_problems(declaration)
    if problems:
        raise DeclarationError("\n".join(f"{origins.where(loc)}: {field_path(loc)}: {message}"
                                         for loc, message in problems))
    return declaration


def _file_problems(declaration: Declaration) -> list[tuple[tuple[str | int, ...], str]]:
    """What the fields say that the folder must hold."""
    cargo = declaration.file.build.cargo
    if cargo is None:
        return []
    problems: list[tuple[tuple[str | int, ...], str]] = []
    manifest = declaration.folder / cargo.manifest
    if not manifest.is_file():
        return [(("build", "cargo", "manifest"),
                 f"{manifest} does not exist: give the path of the project's Cargo.toml, "
                 "relative to this file")]
    if not (manifest.parent / "Cargo.lock").is_file():
        problems.append((("build", "cargo", "manifest"),
                         f"no Cargo.lock beside {manifest}: run cargo generate-lockfile "
                         "there and commit it (the lab builds --locked, so a build is "
                         "the same everywhere)"))
    for index, folder in enumerate(cargo.sources):
        if Path(folder).is_absolute():
            problems.append((("build", "cargo", "sources", index),
                             f"{folder} is absolute: give it relative to the manifest, so "
                             "the declaration works wherever the project is checked out"))
        elif not (manifest.parent / folder).is_dir():
            problems.append((("build", "cargo", "sources", index),
                             f"{manifest.parent / folder} is not a folder"))
    return problems
