"""The Debian archive is read from the machine's apt configuration, never written in."""

from __future__ import annotations

from pathlib import Path

import pytest
from p2plab.compose.apt_sources import AptSourcesError, debian_archive, sources

pytestmark = pytest.mark.quick


def _etc(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (tmp_path / "sources.list.d").mkdir(exist_ok=True)
    return tmp_path


def test_deb822_security_first_is_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("P2PLAB_DEBIAN_MIRROR", raising=False)
    etc = _etc(tmp_path, {"sources.list.d/debian.sources": (
        "Types: deb\nURIs: http://archive.example/debian-security\nSuites: bookworm-security\n"
        "Components: main\n\n"
        "# a comment between paragraphs\n"
        "Types: deb deb-src\nURIs: http://archive.example/debian/\n"
        "Suites: bookworm bookworm-updates\nComponents: main\n")})
    assert debian_archive(etc) == "http://archive.example/debian"
    assert [s.origin.rsplit(":", 1)[1] for s in sources(etc)] == ["1", "6"]


def test_one_line_list_with_options_and_disabled_deb822(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("P2PLAB_DEBIAN_MIRROR", raising=False)
    etc = _etc(tmp_path, {
        "sources.list": "# deb http://old.example/debian bookworm main\n"
                        "deb-src http://src.example/debian bookworm main\n"
                        "deb [arch=amd64 signed-by=/k.gpg] http://proxy.example:3142/debian "
                        "bookworm main\n",
        "sources.list.d/a.sources": "Enabled: no\nTypes: deb\nURIs: http://off.example/d\n"
                                    "Suites: bookworm\n"})
    assert debian_archive(etc) == "http://proxy.example:3142/debian"


def test_third_party_repositories_are_not_the_debian_archive(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("P2PLAB_DEBIAN_MIRROR", raising=False)
    etc = _etc(tmp_path, {
        "sources.list.d/brave-browser-release.list":
            "deb [signed-by=/usr/share/keyrings/brave.gpg] https://brave.example/ stable main\n",
        "sources.list.d/code.sources": "Types: deb\nURIs: https://code.example/repo\n"
                                       "Suites: stable\nComponents: main\n",
        "sources.list.d/debian.sources":
            "Types: deb\nURIs: http://mirror.example/debian\nSuites: stable stable-updates\n"
            "Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"})
    assert debian_archive(etc) == "http://mirror.example/debian"
    (etc / "sources.list.d" / "debian.sources").unlink()
    with pytest.raises(AptSourcesError, match="no Debian archive"):
        debian_archive(etc)


def test_override_and_missing_archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    etc = _etc(tmp_path, {"sources.list.d/x.list": "deb http://a.example/debian-security "
                                                   "bookworm-security main\n"})
    monkeypatch.delenv("P2PLAB_DEBIAN_MIRROR", raising=False)
    with pytest.raises(AptSourcesError, match="P2PLAB_DEBIAN_MIRROR"):
        debian_archive(etc)
    monkeypatch.setenv("P2PLAB_DEBIAN_MIRROR", "http://mine.example/debian/")
    assert debian_archive(etc) == "http://mine.example/debian"


def test_the_base_image_script_runs_before_p2plab_is_installed(tmp_path: Path) -> None:
    """make scenario runs compose/base_image.py with the system Python, beside the venv's
    install: it must import with the standard library alone (its sibling apt_sources)."""
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    env = {"PATH": os.environ["PATH"], "P2PLAB_BASE_IMAGE": "mine:1"}
    done = subprocess.run([sys.executable, "-S", str(ROOT / "compose" / "base_image.py")],
                          capture_output=True, text=True, env=env, cwd=tmp_path)
    assert (done.returncode, done.stdout) == (0, "mine:1\n"), done.stderr
