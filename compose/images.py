"""The node/router image, built without a container registry.

Steps, each skipped when its result exists: a Debian base image (mmdebstrap from the
Debian mirror, then ``docker import``) unless P2PLAB_BASE_IMAGE names another base;
wheels of the node's Python dependencies, built on the host (no network is needed
inside ``docker build``); the node image (our code, the py node, the router script),
tagged with the project version and a hash of everything that goes into it, so a stale
image is never used silently; and, when a lab runs compiled implementations, a layer
on top holding their programs (``/opt/p2plab/impls/NAME@VERSION/``), tagged with their
build hashes: built in seconds, shared by every lab that runs the same set.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any

from p2plab.compose.backends.base import BackendError
from p2plab.compose.base_image import LOCAL_BASE, BaseImageError, build_base
from p2plab.compose.impls.builds import Built
from p2plab.topology.plan import LAB_PYTHON

import p2plab
from p2plab.progress import Heartbeat
from p2plab.resources import cache_dir, image_dir, package_dir

IMAGE_DIR = image_dir()
IMAGE_REPO = "p2plab-node"
# The node's runtime dependencies, pinned to what this checkout runs with.
# NetfilterQueue: the userspace link stage, run inside node containers on swarm engines.
NODE_DEPENDENCIES = ("libp2p", "trio", "psutil", "multiaddr", "NetfilterQueue")
# What the image runs: the chat node, the event format it writes, the NAT probe, the
# control FIFO writer, the userspace link stage and the swarm agent; laid out in the
# image as installed (p2plab/node/...), so ``python -m p2plab.node`` works.
IMAGE_PACKAGES = {"p2plab/node": "p2plab.node",
                  "p2plab/compose/backends/swarm": "p2plab.compose.backends.swarm"}
IMAGE_FILES = ("__init__.py", "events.py", "natprobe.py", "control.py", "linkcheck.py",
               "relay_limits.py")
IMAGE_MODULES = {"p2plab/compose": ("p2plab.compose", ("__init__.py",)),
                 "p2plab/compose/backends": ("p2plab.compose.backends", ("__init__.py",)),
                 "p2plab/compose/lab": ("p2plab.compose.lab", ("__init__.py", "linkstage.py"))}
APP_DIR = "/opt/p2plab"
# The layer of compiled implementations over the node image.
IMPLS_DOCKERFILE = "ARG NODE_IMAGE\nFROM ${NODE_IMAGE}\nCOPY impls/ /opt/p2plab/impls/\n"


def image_programs(builds: Mapping[str, Built]) -> dict[str, list[str]]:
    """How a container starts each implementation (by spec) and the lab's Python."""
    return {LAB_PYTHON: ["python"], **{spec: b.image_argv() for spec, b in builds.items()}}


def requirements() -> str:
    return "".join(f"{name}=={version(name)}\n" for name in NODE_DEPENDENCIES)


def base_image() -> str:
    return os.environ.get("P2PLAB_BASE_IMAGE", LOCAL_BASE)


def _code_files() -> dict[str, Path]:
    """Path in the image (under app/) -> source file; the same in a checkout and a wheel."""
    top = package_dir("p2plab")
    files = {f"p2plab/{name}": top / name for name in IMAGE_FILES}
    for inside, package in IMAGE_PACKAGES.items():
        folder = package_dir(package)
        files.update({f"{inside}/{path.relative_to(folder)}": path
                      for path in sorted(folder.rglob("*.py"))})
    for inside, (package, names) in IMAGE_MODULES.items():
        files.update({f"{inside}/{name}": package_dir(package) / name for name in names})
    return files


def node_image_tag() -> str:
    """``p2plab-node:VERSION-HASH``: the hash covers Dockerfile, requirements, base and
    code."""
    digest = hashlib.sha256()
    inputs = {"Dockerfile": IMAGE_DIR / "Dockerfile", "router.sh": IMAGE_DIR / "router.sh",
              **_code_files()}
    for name, path in inputs.items():
        digest.update(name.encode())
        digest.update(path.read_bytes())
    digest.update(requirements().encode())
    digest.update(base_image().encode())
    return f"{IMAGE_REPO}:{p2plab.__version__}-{digest.hexdigest()[:12]}"


def compiled(builds: Sequence[Built]) -> list[Built]:
    """The builds with a program to carry (a Python implementation is in the node image)."""
    return sorted((b for b in builds if b.program is not None), key=lambda b: b.key)


def image_tag(builds: Sequence[Built] = ()) -> str:
    """The node image, or with compiled implementations the layer over it that holds
    them: ``...-HASH-IMPLSHASH`` (the same set of builds, the same tag)."""
    tag = node_image_tag()
    programs = compiled(builds)
    if not programs:
        return tag
    digest = hashlib.sha256(tag.encode())
    for built in programs:
        digest.update(f"{built.key}={built.source_hash}:{built.program_hash}\n".encode())
    return f"{tag}-{digest.hexdigest()[:10]}"


def _docker() -> Any:
    import docker

    try:
        client = docker.from_env()
        client.ping()
    except Exception as exc:
        raise BackendError(
            f"no Docker engine reachable ({exc}): start it (systemctl start docker) or "
            "check DOCKER_HOST; the netns backend needs no Docker: --backend netns"
        ) from None
    return client


def _image_exists(client: Any, tag: str) -> bool:
    import docker

    try:
        client.images.get(tag)
        return True
    except docker.errors.ImageNotFound:
        return False


def ensure_base(client: Any, log: Callable[[str], None] = print) -> str:
    """The base image; built locally (``compose/base_image.py``) when it is ours and
    missing."""
    base = base_image()
    if _image_exists(client, base):
        return base
    if base != LOCAL_BASE:
        raise BackendError(
            f"base image {base!r} is not present and p2plab never pulls: pull or build it, "
            f"or unset P2PLAB_BASE_IMAGE to build {LOCAL_BASE} from the Debian archive"
        )
    try:
        with Heartbeat(f"building {LOCAL_BASE}", log):
            return build_base(log)
    except BaseImageError as exc:
        raise BackendError(str(exc)) from None


def ensure_wheels(log: Callable[[str], None] = print) -> Path:
    """Wheels for the node's dependencies, built once per requirements set."""
    reqs = requirements()
    wheel_dir = cache_dir() / "wheels" / hashlib.sha256(reqs.encode()).hexdigest()[:12]
    if (wheel_dir / "requirements.txt").exists():
        return wheel_dir
    log("building wheels for the image's Python dependencies")
    wheel_dir.mkdir(parents=True, exist_ok=True)
    (wheel_dir / "requirements.in").write_text(reqs)
    with Heartbeat("building wheels", log):
        result = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "-q", "-w", str(wheel_dir),
             "-r", str(wheel_dir / "requirements.in")], capture_output=True, text=True)
    if result.returncode != 0:
        raise BackendError(f"pip wheel failed: {result.stderr.strip()[-800:]}")
    (wheel_dir / "requirements.txt").write_text(reqs)
    return wheel_dir


def write_build_context(ctx: Path, wheels: Path) -> None:
    """Dockerfile, wheels/ and app/ (our code and the router script) in ``ctx``."""
    shutil.copy(IMAGE_DIR / "Dockerfile", ctx / "Dockerfile")
    shutil.copytree(wheels, ctx / "wheels")
    app = ctx / "app"
    for inside, path in _code_files().items():
        target = app / inside
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
    (app / "bin").mkdir()
    shutil.copy(IMAGE_DIR / "router.sh", app / "bin" / "p2plab-router")


def write_impls_context(ctx: Path, builds: Sequence[Built]) -> None:
    """The layer's Dockerfile and impls/NAME@VERSION/PROGRAM for each compiled build
    (built on the host, Debian as the image's base, so its libc matches)."""
    (ctx / "Dockerfile").write_text(IMPLS_DOCKERFILE)
    for built in compiled(builds):
        assert built.program is not None
        folder = ctx / "impls" / built.key
        folder.mkdir(parents=True)
        shutil.copy(built.program, folder / built.program.name)


def ensure_image(builds: Sequence[Built] = (), log: Callable[[str], None] = print,
                 client: Any = None) -> str:
    """The image for a lab running ``builds`` on ``client``'s engine (DOCKER_HOST's by
    default), built there if this exact tag does not exist yet; return the tag."""
    client = client or _docker()
    tag = image_tag(builds)
    if _image_exists(client, tag):
        return tag
    node_tag = node_image_tag()
    if not _image_exists(client, node_tag):
        base = ensure_base(client, log)
        wheels = ensure_wheels(log)
        with tempfile.TemporaryDirectory(prefix="p2plab-image-") as tmp:
            write_build_context(Path(tmp), wheels)
            _build(client, Path(tmp), node_tag, {"BASE_IMAGE": base}, log)
    if tag != node_tag:
        with tempfile.TemporaryDirectory(prefix="p2plab-impls-") as tmp:
            write_impls_context(Path(tmp), builds)
            _build(client, Path(tmp), tag, {"NODE_IMAGE": node_tag}, log)
    return tag


def _build(client: Any, ctx: Path, tag: str, buildargs: dict[str, str],
           log: Callable[[str], None]) -> None:
    log(f"building {tag}")
    try:
        with Heartbeat(f"building {tag}", log):
            client.images.build(path=str(ctx), tag=tag, buildargs=buildargs, pull=False,
                                rm=True, forcerm=True)
    except Exception as exc:
        log_lines = getattr(exc, "build_log", None) or []
        tail = "".join(str(entry.get("stream", entry.get("error", "")))
                       for entry in log_lines)[-800:]
        raise BackendError(f"docker build of {tag} failed: {exc}\n{tail}") from None


def main() -> int:
    """``python -m p2plab.compose.images [SPEC ...]``: build (or confirm) the image for
    labs running the implementations named (none: the node image alone) and print its
    tag."""
    from p2plab.compose.impls.builds import ensure_built
    from p2plab.compose.impls.registry import Registry

    def log(message: str) -> None:
        print(message, file=sys.stderr)

    try:
        registry = Registry.load()
        builds = [ensure_built(registry.resolve(spec), log) for spec in sys.argv[1:]]
        print(ensure_image(builds, log))
    except (BackendError, ValueError) as exc:
        print(f"p2plab: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
