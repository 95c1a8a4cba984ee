"""The documentation, checked against the code it describes.

- docs/reference/scenario-fields.md: one ``## Model`` section per pydantic model of the
  scenario (and matrix) schema, each listing exactly that model's fields by their YAML
  names; the NAT preset table lists exactly the presets;
- docs/reference/cli.md: one ``## p2plab COMMAND`` section per subcommand, listing
  exactly its options and positional arguments (read from the parser itself);
- docs/reference/node-contract.md: the flag table is the py node's parser, the command
  table the commands it accepts;
- docs/reference/results-folder.md: the event table is ``p2plab.events.EVENT_FIELDS``, the
  manifest table ``Manifest``'s fields;
- docs/reference/backends.md: the backend table is what ``--backend`` accepts;
- docs/reference/shipped-scenarios.md: the table is ``scenarios/``;
- docs/reference/layout.md names every Python module of the source folders;
- everywhere (README.md and docs/**/*.md): every relative link points at a file that
  exists (and a heading, for ``#anchors``), every repository path written in backticks
  exists, every ``p2plab.x.y`` module named exists, every ``make TARGET`` is a Makefile
  target, every ``P2PLAB_*`` variable is read somewhere in the code, every
  ``lab.method(`` is a method of ``Lab``; and README.md has at most 200 lines.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import inspect
import re
from pathlib import Path

import pytest
import yaml
from p2plab.topology.loading import shipped_files
from pydantic import BaseModel

pytestmark = pytest.mark.quick

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
REFERENCE = DOCS / "reference"
README = ROOT / "README.md"
SOURCE_FOLDERS = ("node", "topology", "compose", "analysis", "orchestrate", "p2plab")


def markdown_files() -> list[Path]:
    return [README, *sorted(DOCS.rglob("*.md"))]


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


# -- reading Markdown -------------------------------------------------------------------
def without_code_blocks(text: str) -> str:
    """The text with fenced code blocks blanked (line numbers kept)."""
    out, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            out.append("")
        else:
            out.append("" if fenced else line)
    return "\n".join(out)


def sections(path: Path, level: int = 2) -> dict[str, str]:
    """Heading text -> the text under it (until the next heading of that level or above)."""
    marker = "#" * level + " "
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in without_code_blocks(path.read_text()).splitlines():
        if re.match(rf"#{{1,{level}}} ", line):
            if line.startswith(marker):
                current = found.setdefault(line[len(marker):].strip(), [])
            else:
                current = None
            continue
        if current is not None:
            current.append(line)
    return {title: "\n".join(lines) for title, lines in found.items()}


def cells(line: str) -> list[str]:
    return [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]


def tables(text: str) -> list[tuple[list[str], list[list[str]]]]:
    """Every table in ``text``: (header cells, body rows)."""
    lines = text.splitlines()
    out = []
    i = 0
    while i < len(lines) - 1:
        if lines[i].lstrip().startswith("|") and re.fullmatch(r"\s*\|[\s:|-]+\|\s*", lines[i + 1]):
            header = cells(lines[i])
            body = []
            i += 2
            while i < len(lines) and lines[i].lstrip().startswith("|"):
                body.append(cells(lines[i]))
                i += 1
            out.append((header, body))
        else:
            i += 1
    return out


def first_column(text: str, header: str) -> list[list[str]]:
    """The backticked names in the first cell of each row of every table whose first
    header cell is ``header``, one list per row."""
    return [re.findall(r"`([^`]+)`", row[0]) for head, body in tables(text)
            if head and head[0] == header for row in body]


def names_in(text: str, header: str) -> set[str]:
    return {name for row in first_column(text, header) for name in row}


def diff_message(what: str, documented: set[str], actual: set[str], where: str) -> str:
    parts = []
    if actual - documented:
        parts.append(f"in the code but not documented in {where}: {sorted(actual - documented)}")
    if documented - actual:
        parts.append(f"documented in {where} but not in the code: {sorted(documented - actual)}")
    return f"{what}: " + "; ".join(parts)


# -- scenario fields --------------------------------------------------------------------
def schema_models() -> dict[str, type[BaseModel]]:
    """Every public pydantic model of the scenario schema and of matrix files."""
    from p2plab.topology import matrix, schema

    found: dict[str, type[BaseModel]] = {}
    for module in (schema, matrix):
        for name, value in vars(module).items():
            if (inspect.isclass(value) and issubclass(value, BaseModel)
                    and value.__module__ == module.__name__ and not name.startswith("_")):
                found[name] = value
    return found


def yaml_names(model: type[BaseModel]) -> set[str]:
    return {info.alias or name for name, info in model.model_fields.items()}


SCENARIO_FIELDS = REFERENCE / "scenario-fields.md"


def test_every_model_of_the_schema_has_a_section() -> None:
    documented = set(sections(SCENARIO_FIELDS))
    actual = set(schema_models())
    assert documented == actual, diff_message("models", documented, actual, rel(SCENARIO_FIELDS))


@pytest.mark.parametrize("model", sorted(schema_models()))
def test_documented_fields_are_the_models_fields(model: str) -> None:
    text = sections(SCENARIO_FIELDS).get(model)
    assert text is not None, f"{rel(SCENARIO_FIELDS)} has no '## {model}' section"
    rows = first_column(text, "field")
    assert all(len(row) == 1 for row in rows), \
        f"{model}: each row's first cell holds one field name in backticks: {rows}"
    documented = [row[0] for row in rows]
    assert len(documented) == len(set(documented)), f"{model}: a field is listed twice"
    assert set(documented) == yaml_names(schema_models()[model]), diff_message(
        f"fields of {model}", set(documented), yaml_names(schema_models()[model]),
        f"{rel(SCENARIO_FIELDS)} ## {model}")


def test_nat_presets_are_the_presets() -> None:
    from p2plab.topology.nat import PRESETS

    documented = names_in(sections(SCENARIO_FIELDS)["NatSpec"], "preset")
    assert documented == set(PRESETS), diff_message("NAT presets", documented, set(PRESETS),
                                                    f"{rel(SCENARIO_FIELDS)} ## NatSpec")


# -- the command line -------------------------------------------------------------------
class _Parsed(Exception):
    pass


def cli_parser(monkeypatch: pytest.MonkeyPatch) -> argparse.ArgumentParser:
    """The parser ``p2plab.cli.main`` builds, caught as it parses."""
    from p2plab import cli

    def catch(self: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        raise _Parsed(self)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", catch)
    with pytest.raises(_Parsed) as caught:
        cli.main([])
    parser = caught.value.args[0]
    assert isinstance(parser, argparse.ArgumentParser)
    return parser


def arguments(parser: argparse.ArgumentParser) -> set[str]:
    """Options as written (``--backend``, ``-o``), positionals as ``DEST`` in capitals."""
    out: set[str] = set()
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        if action.option_strings:
            out |= set(action.option_strings)
        else:
            out.add(action.dest.upper())
    return out


CLI = REFERENCE / "cli.md"


def test_cli_reference_is_the_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    parser = cli_parser(monkeypatch)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    documented = {title.removeprefix("p2plab ") for title in sections(CLI)
                  if title.startswith("p2plab ")}
    assert documented == set(sub.choices), diff_message("commands", documented,
                                                        set(sub.choices), rel(CLI))
    problems = []
    for name, command in sub.choices.items():
        listed = names_in(sections(CLI)[f"p2plab {name}"], "argument")
        actual = arguments(command)
        if listed != actual:
            problems.append(diff_message(f"p2plab {name}", listed, actual,
                                         f"{rel(CLI)} ## p2plab {name}"))
    assert not problems, "\n".join(problems)


# -- the node contract, the event schema, the manifest ----------------------------------
CONTRACT = REFERENCE / "node-contract.md"


def test_contract_flags_are_the_py_nodes_flags() -> None:
    from p2plab.node.config import _build_parser

    actual = {s for a in _build_parser()._actions if not isinstance(a, argparse._HelpAction)
              for s in a.option_strings}
    text = sections(CONTRACT)["Command line"]
    documented = {flag for row in first_column(text, "flag") for cell in row
                  for flag in re.findall(r"--[a-z][a-z-]*", cell)}
    assert documented == actual, diff_message("node flags", documented, actual,
                                              f"{rel(CONTRACT)} ## Command line")


def test_contract_commands_are_the_nodes_commands() -> None:
    from p2plab.node.control import REQUIRED

    text = sections(CONTRACT)["Control channel"]
    documented = {name for row in first_column(text, "command") for cell in row
                  for name in re.findall(r'"cmd":\s*"([a-z-]+)"', cell)}
    assert documented == set(REQUIRED), diff_message("control commands", documented,
                                                     set(REQUIRED), rel(CONTRACT))


RESULTS_FOLDER = REFERENCE / "results-folder.md"


def test_event_table_is_the_event_schema() -> None:
    from p2plab.events import EVENT_FIELDS

    text = RESULTS_FOLDER.read_text()
    rows = {row[0].strip("`"): re.findall(r"`([^`]+)`", row[1])
            for head, body in tables(text) if head[:1] == ["event"] for row in body}
    assert set(rows) == set(EVENT_FIELDS), diff_message("event types", set(rows),
                                                        set(EVENT_FIELDS), rel(RESULTS_FOLDER))
    wrong = {t: (rows[t], list(f)) for t, f in EVENT_FIELDS.items() if rows[t] != list(f)}
    assert not wrong, f"required fields differ from p2plab/events.py (documented, code): {wrong}"


def test_manifest_table_is_the_manifest_model() -> None:
    from p2plab.compose.run_folder import Manifest

    documented = names_in(RESULTS_FOLDER.read_text(), "manifest field")
    actual = set(Manifest.model_fields)
    assert documented == actual, diff_message("manifest fields", documented, actual,
                                              rel(RESULTS_FOLDER))


# -- backends, shipped scenarios, layout ------------------------------------------------
def test_backend_table_is_what_backend_accepts() -> None:
    from p2plab.compose.backends.registry import EXECUTORS

    path = REFERENCE / "backends.md"
    documented = {row[0] for row in first_column(path.read_text(), "backend")}
    assert documented == set(EXECUTORS), diff_message("backends", documented, set(EXECUTORS),
                                                      rel(path))


def test_shipped_scenarios_table_is_the_scenarios_folder() -> None:
    path = REFERENCE / "shipped-scenarios.md"
    rows = {row[0].strip("`"): row[-1] for head, body in tables(path.read_text())
            if head[:1] == ["scenario"] for row in body}
    files = {p.stem: yaml.safe_load(p.read_text()) for p in shipped_files(ROOT / "scenarios")}
    assert set(rows) == set(files), diff_message("shipped scenarios", set(rows), set(files),
                                                 rel(path))
    in_suite = {name: "no" if "matrix" in data or data.get("in_suite") is False else "yes"
                for name, data in files.items()}
    wrong = {name: (rows[name], in_suite[name]) for name in files if rows[name] != in_suite[name]}
    assert not wrong, f"'in the suite' column (documented, actual) in {rel(path)}: {wrong}"


def test_layout_names_every_module() -> None:
    path = REFERENCE / "layout.md"
    text = path.read_text()
    modules = {rel(p) for folder in SOURCE_FOLDERS for p in (ROOT / folder).rglob("*.py")
               if p.name != "__init__.py" and "__pycache__" not in p.parts}
    missing = sorted(m for m in modules if f"`{m}`" not in text)
    assert not missing, f"modules not named in {rel(path)}: {missing}"


# -- every page -------------------------------------------------------------------------
def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[`*_]", lambda m: "_" if m.group() == "_" else "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    return {slug(line.lstrip("#")) for line in without_code_blocks(path.read_text()).splitlines()
            if re.match(r"#{1,6} ", line)}


LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def test_relative_links_point_at_files_that_exist() -> None:
    broken = []
    for page in markdown_files():
        for target in LINK.findall(without_code_blocks(page.read_text())):
            if re.match(r"[a-z]+:", target):
                continue  # http:, https:, mailto:
            file_part, _, anchor = target.partition("#")
            dest = (page.parent / file_part).resolve() if file_part else page
            if not dest.exists():
                broken.append(f"{rel(page)}: {target} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                broken.append(f"{rel(page)}: {target} (no such heading in {rel(dest)})")
    assert not broken, "broken links:\n" + "\n".join(broken)


def code_spans(page: Path) -> list[str]:
    return re.findall(r"`([^`\n]+)`", without_code_blocks(page.read_text()))


TOP = ("node", "node-rust", "topology", "compose", "analysis", "orchestrate", "p2plab",
       "scenarios", "tests", "benchmarks", "docs")


def test_paths_in_backticks_exist() -> None:
    missing = []
    for page in markdown_files():
        for span in code_spans(page):
            is_path = (re.fullmatch(r"[\w./-]+", span) is not None and "/" in span
                       and span.split("/")[0] in TOP)
            if is_path and not (ROOT / span).exists():
                missing.append(f"{rel(page)}: {span}")
    assert not missing, "paths that do not exist:\n" + "\n".join(missing)


def test_modules_named_exist() -> None:
    missing = []
    for page in markdown_files():
        for span in code_spans(page):
            for name in re.findall(r"(?<![\w.])(p2plab(?:\.[a-z_]+)+)", span):
                if "=" in span.split(name, 1)[1][:1]:
                    continue  # a Docker label such as p2plab.run=<run id>
                if not _module_or_attribute(name):
                    missing.append(f"{rel(page)}: {name}")
    assert not missing, "modules that do not exist:\n" + "\n".join(missing)


def _module_or_attribute(name: str) -> bool:
    try:
        if importlib.util.find_spec(name) is not None:
            return True
    except ModuleNotFoundError:
        pass
    module, _, attribute = name.rpartition(".")
    try:
        return hasattr(importlib.import_module(module), attribute)
    except ModuleNotFoundError:
        return False


def makefile_targets() -> set[str]:
    return set(re.findall(r"^([a-z][\w-]*):", (ROOT / "Makefile").read_text(), re.M))


def code_text(page: Path) -> str:
    """What a page writes as code: inline spans and fenced blocks."""
    text = page.read_text()
    plain = without_code_blocks(text).splitlines()
    fenced = [line for line, blank in zip(text.splitlines(), plain, strict=True)
              if line != blank and not line.lstrip().startswith("```")]
    return "\n".join([*code_spans(page), *fenced])


def test_make_targets_exist() -> None:
    targets = makefile_targets()
    wrong = []
    for page in markdown_files():
        for target in re.findall(r"(?<![\w-])make ([a-z][\w-]*)", code_text(page)):
            if target not in targets:
                wrong.append(f"{rel(page)}: make {target}")
    assert not wrong, "not Makefile targets:\n" + "\n".join(wrong)


def test_environment_variables_are_read_by_the_code() -> None:
    code = "\n".join(p.read_text(errors="replace") for folder in (*SOURCE_FOLDERS, "node-rust")
                     for p in (ROOT / folder).rglob("*")
                     if p.is_file() and p.suffix in (".py", ".rs", ".sh")
                     and "__pycache__" not in p.parts)
    code += (ROOT / "Makefile").read_text() + (ROOT / "compose/image/Dockerfile").read_text()
    wrong = sorted({f"{rel(page)}: {var}" for page in markdown_files()
                    for var in re.findall(r"\bP2PLAB_[A-Z_]*[A-Z]", page.read_text())
                    if var not in code})
    assert not wrong, "variables no code reads:\n" + "\n".join(wrong)


def test_lab_methods_exist() -> None:
    from p2plab.compose.lab.hosts import Host
    from p2plab.compose.lab.lifecycle import Lab

    wrong = []
    for page in markdown_files():
        text = page.read_text()
        for method in re.findall(r"\blab\.([a-z_]+)\(", text):
            if not hasattr(Lab, method):
                wrong.append(f"{rel(page)}: lab.{method}()")
        for method in re.findall(r"\blab\[[^\]]+\]\.([a-z_]+)\(", text):
            if not hasattr(Host, method):
                wrong.append(f"{rel(page)}: lab[...].{method}()")
        for method in re.findall(r"(?<![\w\]])\.([a-z_]+)\((?:argv|command|type)\)", text):
            if not hasattr(Host, method):
                wrong.append(f"{rel(page)}: host .{method}()")
    assert not wrong, "not methods of Lab or Host:\n" + "\n".join(wrong)


def test_readme_first_scenario_is_the_shipped_file() -> None:
    blocks = re.findall(r"```yaml\n(.*?)```", README.read_text(), re.S)
    shown = next(yaml.safe_load(b) for b in blocks if b.startswith("name: nat-relay"))
    shipped = yaml.safe_load((ROOT / "scenarios" / "nat-relay.yaml").read_text())
    shipped.pop("description", None)
    assert shown == shipped, "README.md's nat-relay differs from scenarios/nat-relay.yaml"


def test_readme_is_short() -> None:
    lines = README.read_text().count("\n")
    assert lines <= 200, f"README.md has {lines} lines; keep it at most 200 (detail goes in docs/)"
