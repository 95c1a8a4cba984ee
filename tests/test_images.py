"""The node image comes in two variants: with the Rust node, and without it for labs of
py nodes only (which then never wait on cargo)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import docker
import pytest
from p2plab.compose import images, rustnode
from p2plab.topology.loading import load_scenario
from p2plab.topology.plan import build_plan

from p2plab.resources import scenarios_dir

pytestmark = pytest.mark.quick


def test_tags_differ_and_name_the_variant() -> None:
    with_rust, without = images.image_tag(rust=True), images.image_tag(rust=False)
    assert with_rust != without and without.endswith("-py") and not with_rust.endswith("-py")
    assert with_rust.startswith(f"{images.IMAGE_REPO}:")


def test_which_plans_need_the_rust_node() -> None:
    assert not build_plan(load_scenario(scenarios_dir() / "nat-relay.yaml")).uses("rust")
    assert build_plan(load_scenario(scenarios_dir() / "gossip-50.yaml")).uses("rust")


def test_build_context_without_the_rust_node(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "requirements.txt").write_text("")
    (tmp_path / "ctx").mkdir()
    images.write_build_context(tmp_path / "ctx", wheels, None)
    bin_dir = tmp_path / "ctx" / "app" / "bin"
    assert (bin_dir / "p2plab-router").exists()
    assert not (bin_dir / rustnode.BINARY_NAME).exists()
    assert (tmp_path / "ctx" / "app" / "p2plab" / "node" / "__main__.py").exists()


class _Images:
    def __init__(self, present: set[str]) -> None:
        self.present = present

    def get(self, tag: str) -> Any:
        if tag not in self.present:
            raise docker.errors.ImageNotFound(tag)
        return tag


class _Client:
    def __init__(self, present: set[str]) -> None:
        self.images = _Images(present)


def test_a_py_lab_uses_the_image_with_rust_when_it_is_there(monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    def no_build(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("nothing should be built")

    monkeypatch.setattr(images, "ensure_base", no_build)
    full = images.image_tag(rust=True)
    assert images.ensure_image(client=_Client({full}), rust=False) == full
    slim = images.image_tag(rust=False)
    assert images.ensure_image(client=_Client({slim, full}), rust=False) == slim
    with pytest.raises(AssertionError, match="nothing should be built"):
        images.ensure_image(client=_Client({slim}), rust=True)
