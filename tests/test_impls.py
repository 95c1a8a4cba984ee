"""Implementations as declarations: loading and checking them (errors with file, line and
field), what a scenario's impl: names among them, and their build cache key."""

from __future__ import annotations

from pathlib import Path

import pytest
from p2plab.compose.impls.builds import source_hash
from p2plab.compose.impls.declaration import DeclarationError, load_declaration
from p2plab.compose.impls.registry import (
    REGISTER_ENV,
    Registry,
    UnknownImplementation,
    resolve_scenario,
)
from p2plab.topology.loading import ScenarioError, load_scenario
from p2plab.topology.overrides import OverrideError, implementation_overrides

pytestmark = pytest.mark.quick
ROOT_DECLARATIONS = Path(__file__).resolve().parent.parent / "node-rust"
GOOD = """\
name: my-node
version: '2.1'
library: {name: rust-libp2p, version: 0.57.1}
build:
  cargo: {manifest: crate/Cargo.toml, binary: my-node}
"""


def _crate(folder: Path) -> None:
    (folder / "crate" / "src").mkdir(parents=True)
    (folder / "crate" / "Cargo.toml").write_text("[package]\nname = 'my-node'\n")
    (folder / "crate" / "Cargo.lock").write_text("")
    (folder / "crate" / "src" / "main.rs").write_text("fn main() {}\n")


def test_the_built_ins_and_what_names_them() -> None:
    registry = Registry.load()
    assert registry.resolve("py").key == "py@0.8.1"
    assert registry.resolve("rust").key == "rust@0.57.1"  # the default
    assert registry.resolve("rust@0.53").key == "rust@0.53.2"  # a prefix, by components
    assert registry.resolve("rust@0.53.2").key == "rust@0.53.2"
    # A variant of a release is named whole; a prefix names the plain release.
    variant = "rust@0.53.2+relay-0.17.1"
    assert registry.resolve(variant).key == variant
    assert registry.resolve("rust@0.53.2+relay-0.17").key == variant  # by components
    assert registry.resolve("rust@0.57").key == "rust@0.57.1"
    with pytest.raises(UnknownImplementation, match=r"no version '0.5' .*rust@0.53.2"):
        registry.resolve("rust@0.5")  # 0.5 is not a component prefix of 0.53.2
    with pytest.raises(UnknownImplementation, match="no implementation named 'go'"):
        registry.resolve("go")


@pytest.mark.parametrize("edit, line, field, words", [
    (("version: '2.1'", "version: 2 1"), 2, "version", "is not a version"),
    (("name: my-node", "name: My Node"), 1, "name", "lower-case name"),
    (("  cargo: {manifest: crate/Cargo.toml, binary: my-node}", "  cargo: {binary: x}"), 5,
     "build.cargo.manifest", "required field 'manifest' is missing"),
    (("  cargo: {manifest: crate/Cargo.toml, binary: my-node}",
      "  cargo: {manifest: nowhere/Cargo.toml, binary: my-node}"), 5, "build.cargo.manifest",
     "does not exist"),
    (("library: {name: rust-libp2p, version: 0.57.1}", "library: {name: rust-libp2p}"), 3,
     "library.version", "is missing"),
    (("build:", "runs: [x]\nbuild:"), 4, "runs", "unknown field 'runs'"),
])
def test_bad_declarations_name_file_line_and_field(tmp_path: Path, edit: tuple[str, str],
                                                   line: int, field: str, words: str) -> None:
    _crate(tmp_path)
    path = tmp_path / "p2plab-impl.yaml"
    path.write_text(GOOD.replace(*edit))
    with pytest.raises(DeclarationError) as info:
        load_declaration(path)
    assert any(m.startswith(f"{path}:{line}: {field}: ") and words in m
               for m in str(info.value).splitlines()), str(info.value)


def test_a_declaration_needs_its_lock_file_and_one_build(tmp_path: Path) -> None:
    _crate(tmp_path)
    (tmp_path / "crate" / "Cargo.lock").unlink()
    path = tmp_path / "p2plab-impl.yaml"
    path.write_text(GOOD)
    with pytest.raises(DeclarationError, match=r"no Cargo\.lock beside"):
        load_declaration(path)
    path.write_text(GOOD.replace("build:\n", "build:\n  python: {module: m, package: p}\n"))
    with pytest.raises(DeclarationError, match=r"exactly one of build\.cargo"):
        load_declaration(path)


def test_a_user_declaration_beside_the_scenario_and_by_flag(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    _crate(tmp_path)
    (tmp_path / "my-node.impl.yaml").write_text(GOOD)
    scenario = tmp_path / "lab.yaml"
    scenario.write_text("name: lab\nimpl: py\nnodes:\n  - {name: a, lan: public}\n"
                        "  - {name: b, lan: public, impl: my-node}\n")
    declarations = resolve_scenario(Registry.load(scenario=scenario), load_scenario(scenario))
    assert {spec: d.key for spec, d in declarations.items()} == \
        {"py": "py@0.8.1", "my-node": "my-node@2.1"}
    # Without the neighbour, the scenario's line names what is missing and how to add it.
    with pytest.raises(ScenarioError) as info:
        resolve_scenario(Registry.load(), load_scenario(scenario))
    assert str(info.value).startswith(f"{scenario}:5: nodes[1].impl: no implementation "
                                      "named 'my-node'") and "--register" in str(info.value)
    # --register puts the file in the environment every lab of the command reads.
    elsewhere = tmp_path / "other"
    elsewhere.mkdir()
    (tmp_path / "my-node.impl.yaml").rename(elsewhere / "p2plab-impl.yaml")
    (tmp_path / "crate").rename(elsewhere / "crate")
    monkeypatch.setenv(REGISTER_ENV, str(elsewhere / "p2plab-impl.yaml"))
    assert Registry.load().resolve("my-node@2").key == "my-node@2.1"


def test_a_scenario_asking_for_what_a_declaration_leaves_out_is_refused(tmp_path: Path
                                                                        ) -> None:
    """capabilities: a chat-only node as a relay, a relay client or a hole puncher is an
    error at the field that asks for it; with holepunch: false a relayed dial is fine."""
    _crate(tmp_path)
    (tmp_path / "my-node.impl.yaml").write_text(GOOD + "capabilities: [relay-client]\n")
    scenario = tmp_path / "lab.yaml"
    scenario.write_text(
        "name: lab\nimpl: my-node\npublic: {subnet: 203.0.113.0/24}\n"
        "lans: [{name: home, subnet: 10.1.0.0/24, nat: port-restricted}]\nnodes:\n"
        "  - {name: r, lan: public, role: relay}\n"
        "  - {name: a, lan: home, relay: [r]}\n"
        "  - {name: b, lan: public, dial: [{node: a, via: r}], holepunch: false}\n")
    registry = Registry.load(scenario=scenario)
    with pytest.raises(ScenarioError) as info:
        resolve_scenario(registry, load_scenario(scenario))
    lines = str(info.value).splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith(f"{scenario}:6: nodes[0].role: my-node@2.1 does not "
                               "implement relay-hop") and "claims relay-client" in lines[0]
    assert lines[1].startswith(f"{scenario}:7: nodes[1].holepunch: my-node@2.1 does not "
                               "implement holepunch") and "holepunch: false" in lines[1]
    # The relay on a built-in and DCUtR off: the same nodes are fine.
    scenario.write_text(scenario.read_text()
                        .replace("role: relay}", "role: relay, impl: rust}")
                        .replace("relay: [r]}", "relay: [r], holepunch: false}"))
    assert set(resolve_scenario(registry, load_scenario(scenario))) == {"my-node", "rust"}
    # Undeclared, an implementation claims the whole contract.
    assert load_declaration(ROOT_DECLARATIONS / "p2plab-impl.yaml").file.capabilities == \
        ["relay-hop", "relay-client", "holepunch"]


def test_the_same_key_twice_is_refused(tmp_path: Path) -> None:
    _crate(tmp_path)
    first, second = tmp_path / "a.impl.yaml", tmp_path / "b.impl.yaml"
    first.write_text(GOOD)
    second.write_text(GOOD)
    with pytest.raises(DeclarationError, match=r"my-node@2\.1 is declared already by"):
        Registry.load(extra=[first, second])


def test_builds_sharing_a_target_folder_need_binaries_of_their_own(tmp_path: Path) -> None:
    _crate(tmp_path)
    ours = tmp_path / "a.impl.yaml"
    ours.write_text(GOOD.replace("binary: my-node}", "binary: p2plab-node-rs, target: rust}"))
    with pytest.raises(DeclarationError, match=r"a\.impl\.yaml:5: build\.cargo\.binary: "
                       r"'p2plab-node-rs' is built into the target folder 'rust' by rust@"):
        Registry.load(extra=[ours])
    # Its own binary name in the shared folder, or the same name in a folder of its own.
    ours.write_text(GOOD.replace("binary: my-node}", "binary: my-node, target: rust}"))
    assert Registry.load(extra=[ours]).resolve("my-node").cargo_target == "rust"
    ours.write_text(GOOD.replace("binary: my-node}", "binary: p2plab-node-rs}"))
    assert Registry.load(extra=[ours]).resolve("my-node").cargo_target == "my-node@2.1"
    # The built-ins share one folder, each with its own binary.
    registry = Registry.load()
    shared = [registry.resolve(spec) for spec in ("rust@0.57.1", "rust@0.53.2")]
    assert {d.cargo_target for d in shared} == {"rust"}
    assert len({d.file.build.cargo.binary for d in shared if d.file.build.cargo}) == 2


def test_the_cache_key_follows_the_sources(tmp_path: Path) -> None:
    _crate(tmp_path)
    path = tmp_path / "p2plab-impl.yaml"
    path.write_text(GOOD)
    before = source_hash(load_declaration(path))
    (tmp_path / "crate" / "src" / "main.rs").write_text("fn main() { println!(); }\n")
    changed = source_hash(load_declaration(path))
    (tmp_path / "crate" / "target").mkdir()
    (tmp_path / "crate" / "target" / "junk").write_text("x")
    assert before != changed == source_hash(load_declaration(path))  # target/ is not a source


def test_both_rust_versions_share_the_sources_and_differ_in_their_manifest() -> None:
    registry = Registry.load()
    old, new = registry.resolve("rust@0.53"), registry.resolve("rust@0.57.1")
    assert old.file.build.cargo is not None and new.file.build.cargo is not None
    old_src = (old.folder / old.file.build.cargo.manifest).parent / old.file.build.cargo.sources[0]
    new_src = (new.folder / new.file.build.cargo.manifest).parent / new.file.build.cargo.sources[0]
    assert old_src.resolve() == new_src.resolve()
    assert source_hash(old) != source_hash(new)


def test_one_scenario_across_versions() -> None:
    fields = {("impl",): "rust", ("nodes", 2, "impl"): "py", ("nodes", 4, "impl"): "rust@0.57.1"}
    overrides = implementation_overrides(fields, "rust@0.53")
    assert [(o.path, o.value) for o in overrides] == [(("impl",), "rust@0.53"),
                                                      (("nodes", 4, "impl"), "rust@0.53")]
    with pytest.raises(OverrideError, match="no node of this scenario runs 'go'"):
        implementation_overrides(fields, "go@1")


def test_matrix_pairs_of_versions_and_where_they_changed() -> None:
    from p2plab.analysis.matrix import version_changes
    from p2plab.topology.matrix import MatrixSpec, split_pair

    assert split_pair("rust@0.53/rust") == ("rust@0.53", "rust")
    assert split_pair("py-rust") == ("py", "rust")
    with pytest.raises(ValueError, match="not an implementation pair"):
        split_pair("a-b-c")
    with pytest.raises(ValueError):
        MatrixSpec(impls=["rust@0.53/Rust 2"])
    row = {"a": "symmetric", "b": "full-cone", "transport": "tcp", "reasons": ""}
    rows = [{**row, "impls": "rust/rust", "outcome": "direct"},
            {**row, "impls": "rust@0.53/rust@0.53", "outcome": "relayed",
             "reasons": "Giving up after 3 dial attempts"},
            {**row, "impls": "py/rust", "outcome": "relayed"},  # other implementations
            {**row, "a": "full-cone", "b": "symmetric", "impls": "rust@0.53/rust",
             "outcome": "direct"}]
    changes = version_changes(rows)
    assert len(changes) == 1
    assert changes[0]["outcomes"] == {"rust/rust": "direct", "rust@0.53/rust@0.53": "relayed",
                                      "rust@0.53/rust": "direct"}
    assert changes[0]["reasons"] == {"rust@0.53/rust@0.53": "Giving up after 3 dial attempts"}


def test_the_python_kit_holds_the_contract(tmp_path: Path) -> None:
    """What a Python node of one's own imports to follow the contract."""
    from p2plab.node import kit

    from p2plab.events import read_events

    with pytest.raises(kit.UsageError, match="not a multiaddr"):
        kit.parse_args(["--dial", "/ip4/1.2.3/tcp/1"])
    config = kit.parse_args(["--key-seed", "seed-a", "--msg-id", "content"])
    from libp2p.peer.id import ID

    assert ID.from_pubkey(kit.key_pair_from_seed("seed-a").public_key).to_base58() == \
        kit.peer_id_for_seed("seed-a") != kit.peer_id_for_seed("seed-b")
    assert config.msg_id == "content"
    writer = kit.EventWriter.open("me", tmp_path / "events.jsonl")
    writer.emit("node_stopped", reason="quit")
    writer.close()
    assert [e["type"] for e in read_events(tmp_path / "events.jsonl")] == ["node_stopped"]
    with pytest.raises(kit.CommandError):
        kit.parse_command('{"cmd": "publish"}')
