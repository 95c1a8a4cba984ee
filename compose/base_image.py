"""The node image's Debian base, built without a registry: mmdebstrap from the Debian
archive this machine's apt sources name, then ``docker image import``.

Standard library only, so ``make scenario`` builds it beside the venv's install, before
p2plab is importable: ``python3 compose/base_image.py`` (prints the tag; exit 2 with a
message when it cannot). ``compose/images.py`` calls the same code when it is missing.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

try:
    from p2plab.compose.apt_sources import AptSourcesError, debian_archive
except ImportError:  # run as a script before p2plab is installed: its sibling file
    from apt_sources import (  # type: ignore[no-redef]  # the same names, see above
        AptSourcesError,
        debian_archive,
    )

BASE_PACKAGES = ("python3,python3-venv,iproute2,nftables,iptables,conntrack,libgmp10,"
                 "ca-certificates,"
                 "procps,libnetfilter-queue1,tcpdump")
# The tag names the package list, so a changed list never reuses an old base.
LOCAL_BASE = f"p2plab-base:bookworm-{hashlib.sha256(BASE_PACKAGES.encode()).hexdigest()[:8]}"


class BaseImageError(RuntimeError):
    pass


def base_exists(tag: str = LOCAL_BASE) -> bool:
    """Whether the engine DOCKER_HOST names has the image (the docker CLI's answer)."""
    return subprocess.run(["docker", "image", "inspect", tag], capture_output=True).returncode == 0


def build_base(log: Callable[[str], None] = print) -> str:
    """Build LOCAL_BASE (about 40 s) and return its tag; raise BaseImageError saying why not."""
    if shutil.which("mmdebstrap") is None:
        raise BaseImageError("building the base image needs mmdebstrap: apt-get install "
                             "mmdebstrap")
    if shutil.which("docker") is None:
        raise BaseImageError("building the base image needs the docker CLI")
    try:
        archive = debian_archive()
    except AptSourcesError as exc:
        raise BaseImageError(str(exc)) from None
    log(f"building {LOCAL_BASE} from {archive} (this machine's apt sources; about a minute, "
        "once)")
    with tempfile.TemporaryDirectory(prefix="p2plab-base-") as tmp:
        tar = Path(tmp) / "rootfs.tar"
        result = subprocess.run(
            ["mmdebstrap", "--quiet", "--variant=minbase", f"--include={BASE_PACKAGES}",
             "bookworm", str(tar), archive], capture_output=True, text=True)
        if result.returncode != 0:
            raise BaseImageError(f"mmdebstrap failed: {result.stderr.strip()[-500:]}")
        result = subprocess.run(["docker", "image", "import", str(tar), LOCAL_BASE],
                                capture_output=True, text=True)
        if result.returncode != 0:
            raise BaseImageError(f"docker image import failed: {result.stderr.strip()[-500:]}")
    return LOCAL_BASE


def main() -> int:
    import os

    if os.environ.get("P2PLAB_BASE_IMAGE"):  # another base is chosen: not ours to build
        print(os.environ["P2PLAB_BASE_IMAGE"])
        return 0
    try:
        print(LOCAL_BASE if base_exists() else build_base(lambda m: print(m, file=sys.stderr)))
    except BaseImageError as exc:
        print(f"p2plab: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
