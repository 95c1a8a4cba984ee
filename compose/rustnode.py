"""The Rust implementation of the node contract (``node-rust/``), built by cargo on the
host and cached: the netns backend runs the binary directly, the Docker image carries it.

cargo's target directory lives outside the checkout (``P2PLAB_CARGO_TARGET``, default
``~/.cache/p2plab/cargo-target``), so a fresh clone on the same machine reuses the
build; cargo itself decides what is stale.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from p2plab.compose.backends.base import BackendError

from p2plab.progress import Heartbeat
from p2plab.resources import cache_dir, rust_crate_dir

CRATE = rust_crate_dir()
BINARY_NAME = "p2plab-node-rs"


def target_dir() -> Path:
    return Path(os.environ.get("P2PLAB_CARGO_TARGET", cache_dir() / "cargo-target"))


def source_files() -> list[Path]:
    """What the binary is built from: the manifest, the lock file and the sources."""
    return [CRATE / "Cargo.toml", CRATE / "Cargo.lock", *sorted((CRATE / "src").rglob("*.rs"))]


def source_hash() -> str:
    digest = hashlib.sha256()
    for path in source_files():
        digest.update(str(path.relative_to(CRATE)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def ensure_binary(log: Callable[[str], None] = print) -> Path:
    """Build the release binary if cargo finds it stale (a no-op takes well under a
    second; a cold build about 3 minutes on two cores) and return its path."""
    cargo = shutil.which("cargo") or str(Path.home() / ".cargo" / "bin" / "cargo")
    if not Path(cargo).exists():
        raise BackendError("the Rust node needs cargo (a Rust toolchain): install rustup, "
                           "or use only `impl: py` nodes")
    binary = target_dir() / "release" / BINARY_NAME
    stamp = binary.with_name(f".{BINARY_NAME}.source")
    if binary.exists() and stamp.exists() and stamp.read_text() == source_hash():
        return binary
    log(f"building the Rust node with cargo (node-rust/, target {target_dir()}; about 3 "
        "minutes cold on two cores, then seconds)")
    with Heartbeat("building the Rust node", log):
        result = subprocess.run(
            [cargo, "build", "--release", "--locked", "--quiet",
             "--manifest-path", str(CRATE / "Cargo.toml")],
            env={**os.environ, "CARGO_TARGET_DIR": str(target_dir())},
            capture_output=True, text=True)
    if result.returncode != 0:
        raise BackendError(f"cargo build of the Rust node failed:\n{result.stderr[-2000:]}")
    stamp.write_text(source_hash())
    return binary


def pinned_libp2p() -> str:
    """The exact rust-libp2p version node-rust/Cargo.toml pins (``=X.Y.Z``)."""
    import tomllib

    manifest = tomllib.loads((CRATE / "Cargo.toml").read_text())
    return str(manifest["dependencies"]["libp2p"]["version"]).lstrip("=")


def binary_version(binary: Path) -> str:
    """The binary's ``--version`` line (``p2plab-node-rs X rust-libp2p Y``)."""
    return subprocess.run([str(binary), "--version"], capture_output=True, text=True,
                          check=True).stdout.strip()
