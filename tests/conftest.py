"""Shared fixtures and skips: integration tests need root and real namespaces."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ROOT / "scenarios"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    can_netns = os.geteuid() == 0 and shutil.which("ip") and shutil.which("nft")
    for item in items:
        if "netns" in item.keywords and not can_netns:
            item.add_marker(pytest.mark.skip(reason="needs root with ip and nft"))
