"""The node image holds our code and the py node; a lab running compiled implementations
gets a layer over it with their programs, tagged by what they were built from."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import docker
import pytest
from p2plab.compose import images
from p2plab.compose.impls.builds import Built
from p2plab.compose.impls.registry import Registry, resolve_scenario
from p2plab.topology.loading import load_scenario
from p2plab.topology.plan import LAB_PYTHON

from p2plab.resources import scenarios_dir

pytestmark = pytest.mark.quick
REGISTRY = Registry.load()


def _built(spec: str, program: Path | None, source: str) -> Built:
    return Built(REGISTRY.resolve(spec), program, source)


def test_tags_name_the_compiled_builds(tmp_path: Path) -> None:
    node = images.node_image_tag()
    assert node.startswith(f"{images.IMAGE_REPO}:")
    py = _built("py", None, "p" * 12)
    assert images.image_tag([py]) == images.image_tag() == node
    rust = _built("rust", tmp_path / "p2plab-node-rs", "a" * 12)
    layered = images.image_tag([py, rust])
    assert layered.startswith(node + "-") and layered != node
    # Another source, another tag; the same builds in another order, the same tag.
    assert images.image_tag([_built("rust", rust.program, "b" * 12)]) != layered
    old = _built("rust@0.53", tmp_path / "p2plab-node-rs", "c" * 12)
    assert images.image_tag([old, rust]) == images.image_tag([rust, old])


def test_which_implementations_a_scenario_needs() -> None:
    def keys(name: str) -> set[str]:
        path = scenarios_dir() / f"{name}.yaml"
        return {d.key for d in resolve_scenario(REGISTRY, load_scenario(path)).values()}

    assert keys("nat-relay") == {"py@0.8.1"}
    assert keys("gossip-50") == {"rust@0.57.1", "py@0.8.1"}  # py servers


def test_programs_inside_the_image(tmp_path: Path) -> None:
    rust = _built("rust@0.53", tmp_path / "p2plab-node-rs", "c" * 12)
    programs = images.image_programs({"py": _built("py", None, "p" * 12), "rust@0.53": rust})
    assert programs[LAB_PYTHON] == ["python"]
    assert programs["py"] == ["python", "-m", "p2plab.node"]
    assert programs["rust@0.53"] == ["/opt/p2plab/impls/rust@0.53.2/p2plab-node-rs"]


def test_build_contexts(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "requirements.txt").write_text("")
    (tmp_path / "ctx").mkdir()
    images.write_build_context(tmp_path / "ctx", wheels)
    assert (tmp_path / "ctx" / "app" / "bin" / "p2plab-router").exists()
    assert (tmp_path / "ctx" / "app" / "p2plab" / "node" / "__main__.py").exists()
    program = tmp_path / "p2plab-node-rs"
    program.write_text("#!/bin/sh\n")
    (tmp_path / "layer").mkdir()
    images.write_impls_context(tmp_path / "layer", [_built("rust", program, "a" * 12),
                                                    _built("py", None, "p" * 12)])
    assert (tmp_path / "layer" / "impls" / "rust@0.57.1" / "p2plab-node-rs").exists()
    assert sorted(p.name for p in (tmp_path / "layer" / "impls").iterdir()) == ["rust@0.57.1"]
    assert "FROM ${NODE_IMAGE}" in (tmp_path / "layer" / "Dockerfile").read_text()


class _Images:
    def __init__(self, present: set[str]) -> None:
        self.present = present
        self.built: list[str] = []

    def get(self, tag: str) -> Any:
        if tag not in self.present:
            raise docker.errors.ImageNotFound(tag)
        return tag

    def build(self, path: str, tag: str, buildargs: dict[str, str], **kwargs: Any) -> None:
        assert Path(path, "Dockerfile").exists()
        self.built.append(tag)
        self.present.add(tag)


class _Client:
    def __init__(self, present: set[str]) -> None:
        self.images = _Images(present)


def test_only_the_layer_is_built_over_an_existing_node_image(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def no_build(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the node image should not be rebuilt")

    monkeypatch.setattr(images, "ensure_base", no_build)
    program = tmp_path / "p2plab-node-rs"
    program.write_text("")
    builds = [_built("rust", program, "a" * 12)]
    client = _Client({images.node_image_tag()})
    tag = images.ensure_image(builds, client=client, log=lambda m: None)
    assert client.images.built == [tag] == [images.image_tag(builds)]
    assert images.ensure_image(builds, client=client, log=lambda m: None) == tag
    assert client.images.built == [tag]  # present now: not built again
    with pytest.raises(AssertionError, match="should not be rebuilt"):
        images.ensure_image(builds, client=_Client(set()), log=lambda m: None)
