"""Where this machine gets Debian packages from, read from its own apt configuration.

The base image (mmdebstrap) and the compose v2 binary (``make compose-v2``) need a
Debian archive; the project never names one itself: the machine's apt sources say which
archive (or mirror, or proxy) it may reach. ``P2PLAB_DEBIAN_MIRROR`` overrides them.

``python -m p2plab.compose.apt_sources`` prints the archive's URI (the Makefile's use).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

APT_ETC = Path("/etc/apt")
DEBIAN_CODENAMES = {"buster", "bullseye", "bookworm", "trixie", "forky", "duke", "sid"}


class AptSourcesError(RuntimeError):
    pass


@dataclass(frozen=True)
class Source:
    """One ``deb`` entry: an archive URI and the suites it serves."""

    uri: str
    suites: tuple[str, ...]
    origin: str  # file:line, for messages
    signed_by: str = ""

    def is_debian(self) -> bool:
        """Debian's own archive (or a mirror or proxy of it), not a third-party repository
        (a browser's, an editor's): signed by Debian's keyring, or serving a Debian
        release by its codename."""
        if "debian-archive-keyring" in self.signed_by:
            return True
        return any(s.split("-")[0] in DEBIAN_CODENAMES for s in self.suites)


def _deb822_entries(path: Path) -> list[Source]:
    """Entries of a deb822 ``.sources`` file (paragraphs of ``Field: value`` lines)."""
    found: list[Source] = []
    fields: dict[str, str] = {}
    start = 1
    lines = path.read_text(errors="replace").splitlines() + [""]
    for number, line in enumerate(lines, 1):
        if line.startswith("#"):
            continue
        if not line.strip():
            types = fields.get("types", "").split()
            if "deb" in types and fields.get("enabled", "yes").lower() != "no":
                for uri in fields.get("uris", "").split():
                    found.append(Source(uri.rstrip("/"), tuple(fields.get("suites", "").split()),
                                        f"{path}:{start}", fields.get("signed-by", "")))
            fields, start = {}, number + 1
            continue
        if ":" in line and not line[0].isspace():
            key, value = line.split(":", 1)
            fields[key.strip().lower()] = value.strip()
    return found


def _one_line_entries(path: Path) -> list[Source]:
    """Entries of a one-line-style ``.list`` file: ``deb [options] URI suite components``."""
    found: list[Source] = []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        words = line.split("#", 1)[0].split()
        if not words or words[0] != "deb":
            continue
        words = words[1:]
        options = []
        if words and words[0].startswith("["):
            while words and not words[0].endswith("]"):
                options.append(words.pop(0))
            options.append(words.pop(0) if words else "")
        signed_by = next((o.strip("[]").split("=", 1)[1] for o in options
                          if o.strip("[]").startswith("signed-by=")), "")
        if len(words) >= 2:
            found.append(Source(words[0].rstrip("/"), (words[1],), f"{path}:{number}",
                                signed_by))
    return found


def sources(etc: Path = APT_ETC) -> list[Source]:
    """Every enabled ``deb`` entry of the machine's apt configuration, in apt's order."""
    found: list[Source] = []
    main_list = etc / "sources.list"
    if main_list.is_file():
        found += _one_line_entries(main_list)
    parts = etc / "sources.list.d"
    for path in sorted(parts.glob("*")) if parts.is_dir() else []:
        if path.suffix == ".sources":
            found += _deb822_entries(path)
        elif path.suffix == ".list":
            found += _one_line_entries(path)
    return found


def debian_archive(etc: Path = APT_ETC) -> str:
    """The URI of the machine's Debian archive: the first of Debian's own sources (see
    ``Source.is_debian``) serving a release suite (not only ``-security``, ``-updates``
    or ``-backports``); the override first."""
    override = os.environ.get("P2PLAB_DEBIAN_MIRROR")
    if override:
        return override.rstrip("/")
    release_suffixes = ("-security", "-updates", "-backports", "-proposed-updates")
    for source in sources(etc):
        if source.is_debian() and any(s and not s.endswith(release_suffixes)
                                      for s in source.suites):
            return source.uri
    raise AptSourcesError(
        f"no Debian archive among this machine's apt sources ({etc}/sources.list and "
        f"{etc}/sources.list.d/): add the archive apt should use there, or set "
        "P2PLAB_DEBIAN_MIRROR=URI for p2plab alone")


if __name__ == "__main__":
    try:
        print(debian_archive())
    except AptSourcesError as exc:
        print(f"p2plab: {exc}", file=sys.stderr)
        sys.exit(2)
