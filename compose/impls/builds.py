"""Building a declared implementation, once per what it is built from.

A cargo project is built with ``cargo build --release --locked`` into a target folder of
its own under the cache (``P2PLAB_CARGO_TARGET``, default ``~/.cache/p2plab/cargo-target``,
one subfolder per ``NAME@VERSION``), so a fresh clone on the same machine reuses it and
two versions never overwrite each other's binary. A stamp beside the binary holds the
hash of the manifest, lock file and sources: a changed source is rebuilt, never run
stale. The netns backend runs the binary on the host; the container backends copy it
into an image layer (``compose/images.py``). A Python implementation is a module the
lab's own Python runs, so it has nothing to build.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from p2plab.compose.backends.base import BackendError
from p2plab.compose.impls.declaration import PROGRAM, CargoBuild, Declaration

from p2plab.progress import Heartbeat
from p2plab.resources import cache_dir

APP_IMPLS = "/opt/p2plab/impls"  # where an image holds each built program


def target_root() -> Path:
    return Path(os.environ.get("P2PLAB_CARGO_TARGET", cache_dir() / "cargo-target"))


def target_dir(declaration: Declaration) -> Path:
    """Its own folder, or the one it shares (``build.cargo.target``)."""
    return target_root() / (declaration.cargo_target or declaration.key)


@dataclass(frozen=True)
class Built:
    """A built implementation: what its nodes are started with."""

    declaration: Declaration
    program: Path | None  # the binary on the host; None: a module of the lab's Python
    source_hash: str
    program_hash: str = ""  # of the binary's bytes: what an image layer carries

    @property
    def key(self) -> str:
        return self.declaration.key

    def argv(self, python: str) -> list[str]:
        """The command on the host, before the contract's flags."""
        return self._expand([str(self.program)] if self.program else self._module(python))

    def image_argv(self) -> list[str]:
        """The command inside a node image built with this implementation."""
        if self.program is None:
            return self._expand(self._module("python"))
        return self._expand([self.image_path()])

    def image_path(self) -> str:
        assert self.program is not None
        return f"{APP_IMPLS}/{self.key}/{self.program.name}"

    def _module(self, python: str) -> list[str]:
        build = self.declaration.file.build.python
        assert build is not None
        return [python, "-m", build.module]

    def _expand(self, program: list[str]) -> list[str]:
        out: list[str] = []
        for word in self.declaration.file.run:
            out += program if word == PROGRAM else [word]
        return out


def cargo_sources(declaration: Declaration, build: CargoBuild) -> list[Path]:
    """What the binary is built from: the manifest, its lock file and the source folders."""
    manifest = (declaration.folder / build.manifest).resolve()
    files = [manifest, manifest.parent / "Cargo.lock"]
    for folder in build.sources:
        files += sorted(p for p in (manifest.parent / folder).rglob("*")
                        if p.is_file() and "target" not in p.relative_to(manifest.parent).parts)
    return files


def source_hash(declaration: Declaration) -> str:
    """The cache key: the declaration itself and everything the build reads."""
    digest = hashlib.sha256(declaration.path.read_bytes())
    build = declaration.file.build
    if build.cargo is not None:
        root = (declaration.folder / build.cargo.manifest).resolve().parent
        for path in cargo_sources(declaration, build.cargo):
            digest.update(os.path.relpath(path, root).encode())
            digest.update(path.read_bytes())
    else:
        assert build.python is not None
        digest.update(f"{build.python.package}=={_installed(declaration)}".encode())
    return digest.hexdigest()[:12]


def _installed(declaration: Declaration) -> str:
    build = declaration.file.build.python
    assert build is not None
    try:
        return version(build.package)
    except PackageNotFoundError:
        raise BackendError(f"{declaration.path}: build.python.package: {build.package!r} is "
                           f"not installed in this Python ({declaration.key} runs here)") from None


def ensure_built(declaration: Declaration, log: Callable[[str], None] = print) -> Built:
    """The built implementation, building it first when what it is built from changed."""
    build = declaration.file.build
    digest = source_hash(declaration)
    if build.python is not None:
        installed = _installed(declaration)
        if installed != declaration.file.library.version:
            raise BackendError(
                f"{declaration.path}: library.version: {declaration.key} declares "
                f"{declaration.library_text()} but this Python has {build.python.package} "
                f"{installed}: install that release or correct the declaration")
        return Built(declaration, None, digest)
    assert build.cargo is not None
    binary = target_dir(declaration) / "release" / build.cargo.binary
    stamp = binary.with_name(f".{build.cargo.binary}.source")
    # The stamp holds what the binary was built from and the binary's own hash: a binary
    # cargo rebuilt from other sources since (make test's cargo runs, a manual build) is
    # not taken for this one.
    if binary.exists() and stamp.exists() and stamp.read_text() == f"{digest} {file_hash(binary)}":
        return Built(declaration, binary, digest, file_hash(binary))
    cargo = shutil.which("cargo") or str(Path.home() / ".cargo" / "bin" / "cargo")
    if not Path(cargo).exists():
        raise BackendError(f"{declaration.key} is a cargo project and this machine has no "
                           "cargo: install a Rust toolchain (rustup), or run other "
                           "implementations")
    manifest = (declaration.folder / build.cargo.manifest).resolve()
    log(f"building {declaration.key} with cargo ({manifest.parent}; a cold build takes "
        f"minutes, then seconds; target {target_dir(declaration)})")
    with Heartbeat(f"building {declaration.key}", log):
        result = subprocess.run(
            [cargo, "build", "--release", "--locked", "--quiet", "--manifest-path",
             str(manifest)],
            env={**os.environ, "CARGO_TARGET_DIR": str(target_dir(declaration))},
            capture_output=True, text=True)
    if result.returncode != 0:
        raise BackendError(f"cargo build of {declaration.key} failed:\n{result.stderr[-2000:]}")
    if not binary.exists():
        raise BackendError(f"{declaration.path}: build.cargo.binary: cargo built no "
                           f"{build.cargo.binary!r} (the [[bin]] names in {manifest})")
    _check_version_line(declaration, binary)
    program_hash = file_hash(binary)
    stamp.write_text(f"{digest} {program_hash}")
    return Built(declaration, binary, digest, program_hash)


def is_built(declaration: Declaration) -> bool:
    """Whether a cargo implementation's binary is there and built from what it is now."""
    cargo = declaration.file.build.cargo
    if cargo is None:
        return True
    binary = target_dir(declaration) / "release" / cargo.binary
    stamp = binary.with_name(f".{cargo.binary}.source")
    return (binary.exists() and stamp.exists()
            and stamp.read_text() == f"{source_hash(declaration)} {file_hash(binary)}")


def file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def _check_version_line(declaration: Declaration, binary: Path) -> None:
    """The contract's ``--version`` must name the library the declaration pins: the
    manifest records the declaration, so the two must agree."""
    try:
        out = subprocess.run([str(binary), "--version"], capture_output=True, text=True,
                             timeout=30).stdout.split()
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BackendError(f"{binary} --version failed: {exc}") from None
    library = declaration.file.library
    if out[2:4] != [library.name, library.version]:
        raise BackendError(
            f"{declaration.path}: library: {declaration.key} declares {library.name} "
            f"{library.version} but {binary.name} --version says {' '.join(out) or 'nothing'} "
            "(the contract: NAME VERSION LIBRARY LIBRARY_VERSION): correct one of them")


def main(argv: list[str]) -> int:
    """``python -m p2plab.compose.impls.builds SPEC ...``: build each (``make rust-node``)."""
    import sys

    from p2plab.compose.impls.registry import Registry

    try:
        registry = Registry.load()
        for spec in argv:
            built = ensure_built(registry.resolve(spec), lambda m: print(m, file=sys.stderr))
            print(f"{built.key}: {built.program or 'the lab Python'}")
    except (BackendError, ValueError) as exc:
        print(f"p2plab: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
