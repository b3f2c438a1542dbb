"""The documentation (README.md and docs/*.md) against the code, so that the reference cannot drift.

Every ```yaml block is a sync configuration (whole, or a fragment completed by a minimal SQL sync)
validated by the project's loader, or a launchpad config validated against its Dagster job; every
``sync-pipelines ...`` command (in sh/text/console blocks and inline code) names existing subcommands
and options of the click CLI; every ``make <target>`` exists in the Makefile; every relative link
and image resolves, anchors included; every environment variable of the project named is read by the
code.
"""

from __future__ import annotations

import importlib.util
import re
import shlex
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from sync_pipelines.cli.app import main as cli_main
from sync_pipelines.config.loader import load_configs, parse_config

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
PAGES = [REPO / "README.md", *sorted(DOCS.glob("*.md"))]
SHELL_LANGS = {"sh", "bash", "console", "text", "shell", ""}
FENCE = re.compile(r"^\s*```(\w*)\s*$")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
INLINE = re.compile(r"`([^`]+)`")
ENV_VAR = re.compile(r"\b((?:SYNC|BENCH|DAGSTER)_[A-Z0-9_]*[A-Z0-9])\b")
MAKE = re.compile(r"(?:^|[\s(;`])make ([a-z][a-z-]*)")
SCHEMA_COMMENT = "# yaml-language-server: $schema=../sync-config.schema.json"
BASE_SYNC: dict[str, Any] = {
    "name": "docs_example",
    "source": {"kind": "sql", "url": "sqlite:///source.db", "table": "people"},
    "target": {"kind": "sql", "url": "sqlite:///target.db", "table": "people", "key": ["id"]},
}
"""What a fragment (``history:``, ``parallel:``, a ``source:`` / ``target:`` pair) is completed with."""
BASES = [BASE_SYNC, {**BASE_SYNC, "mode": "incremental", "cursor": "updated_at"}]
"""A fragment is valid when it completes one of these (``partitions:`` needs an incremental sync)."""


@dataclass(frozen=True)
class Block:
    page: Path
    line: int
    lang: str
    body: str

    def __str__(self) -> str:
        return f"{self.page.relative_to(REPO)}:{self.line} ({self.lang or 'plain'} block)"


def blocks(page: Path) -> Iterator[Block]:
    lang: str | None = None
    start, body = 0, list[str]()
    for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
        fence = FENCE.match(line)
        if lang is None and fence:
            lang, start, body = fence.group(1), number, []
        elif lang is not None and line.strip() == "```":
            yield Block(page, start, lang, "\n".join(body))
            lang = None
        elif lang is not None:
            body.append(line)
    assert lang is None, f"{page}: block opened at line {start} is never closed"


def prose(page: Path) -> str:
    """The page without its fenced blocks (inline code spans may wrap over a line break)."""
    text = page.read_text(encoding="utf-8")
    return re.sub(r"^\s*```\w*\s*$.*?^\s*```\s*$", "", text, flags=re.M | re.S)


def all_blocks() -> list[Block]:
    return [block for page in PAGES for block in blocks(page)]


def inline_code(page: Path) -> list[str]:
    return [" ".join(span.split()) for span in INLINE.findall(prose(page))]


def slug(heading: str) -> str:
    """GitHub's anchor of a heading."""
    text = heading.strip().lower().replace("`", "")
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    found = set()
    for block_free_line in prose(page).splitlines():
        heading = re.match(r"^#{1,6} (.+)$", block_free_line)
        if heading:
            found.add(slug(heading.group(1)))
    return found


# -- the pages ---------------------------------------------------------------------------------------------


def test_the_readme_is_a_front_page_linking_every_docs_page() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) < 120, "README.md is the front page; the reference lives in docs/"
    linked = {Path(target.split("#")[0]).name for target in LINK.findall(readme) if target.startswith("docs/")}
    pages = {page.name for page in DOCS.glob("*.md")}
    assert pages - linked == set(), "docs pages the README does not link"
    for required in ("configuration", "sources", "history", "conflicts", "operations", "performance", "scaling",
                     "reliability", "tests"):  # fmt: skip
        assert f"{required}.md" in pages
    for image in ("docs/images/sync-centre.png", "docs/images/dry-run.png"):
        assert f"]({image})" in readme


def test_the_two_commands_are_on_the_front_page_as_ci_runs_them() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    [commands] = [b.body for b in blocks(REPO / "README.md") if b.body.startswith("make demo")]
    assert re.search(r"^make test ", commands, re.M)
    assert "exec make test" in (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert "make demo" in readme and "make ui" in readme


# -- yaml --------------------------------------------------------------------------------------------------


def _launchpad_jobs() -> dict[str, Any]:
    from sync_pipelines.orchestration import build_definitions

    definitions = build_definitions(load_configs(REPO / "syncs"))
    return {node.name: job for job in definitions.get_repository_def().get_all_jobs() for node in job.nodes}


def test_every_yaml_block_is_a_valid_sync_configuration_or_launchpad_config(tmp_path: Path) -> None:
    import dagster

    by_op: dict[str, Any] | None = None
    syncs = launchpads = 0
    problems = []
    for block in [b for b in all_blocks() if b.lang == "yaml"]:
        data = yaml.safe_load(block.body)
        if data is None:
            assert block.body.strip() == SCHEMA_COMMENT, f"{block}: a block of comments only"
            continue
        assert isinstance(data, dict), f"{block}: not a mapping"
        if "ops" in data:
            by_op = by_op if by_op is not None else _launchpad_jobs()
            [op] = data["ops"]
            assert op in by_op, f"{block}: no job has an op {op!r}"
            try:
                dagster.validate_run_config(by_op[op], data)
            except dagster.DagsterInvalidConfigError as exc:
                problems.append(f"{block}: {exc}")
            launchpads += 1
            continue
        outcomes = []
        for number, base in enumerate(BASES):
            path = tmp_path / f"block_{syncs}_{number}.yaml"
            path.write_text(yaml.safe_dump({**base, **data}, allow_unicode=True), encoding="utf-8")
            outcomes.append(parse_config(path))
        if all(config is None for config, _ in outcomes):
            problems.append(f"{block}: {outcomes[0][1]}")
        syncs += 1
    assert problems == []
    # the annotated example, the new-sync template's header, history, real cluster, REST, parallel
    assert syncs >= 5 and launchpads >= 2


def test_a_wrong_field_in_a_documented_yaml_block_would_be_caught(tmp_path: Path) -> None:
    """The check above fails on a field the loader does not know (the extractor reads what the loader reads)."""
    [annotated] = [b for b in all_blocks() if b.lang == "yaml" and b.body.startswith("name: erp_orders ")]
    path = tmp_path / "bad.yaml"
    path.write_text(annotated.body.replace("batch_size:", "batch_sise:"), encoding="utf-8")
    config, errors = parse_config(path)
    assert config is None and any("batch_sise" in e for e in errors)


# -- commands ----------------------------------------------------------------------------------------------


def command_lines() -> list[tuple[str, str]]:
    """``(where, command)`` for each ``sync-pipelines`` command in a shell/text block or an inline span."""
    found = []
    for block in all_blocks():
        if block.lang not in SHELL_LANGS:
            continue
        for offset, line in enumerate(block.body.splitlines(), 1):
            text = re.sub(r"^\s*\$\s+", "", line)
            text = re.sub(r"^(?:[A-Z_]+=\S+\s+)+", "", text).replace(".venv/bin/sync-pipelines", "sync-pipelines")
            if text.startswith("sync-pipelines "):
                found.append((f"{block.page.relative_to(REPO)}:{block.line + offset}", text))
    for page in PAGES:
        # sentences (of paragraphs and list items): `--hosts-file hosts.txt` in the sentence of a
        # `sync-pipelines run host_metrics ...` is an option of that command
        for sentence in re.split(r"\n\s*\n|\n\s*(?:- |\d+\. )|(?<=[.:])\s+(?=[A-Z*(])", prose(page)):
            last = None
            for span in (" ".join(s.split()) for s in INLINE.findall(sentence)):
                if span.startswith("sync-pipelines "):
                    last = span
                    found.append((f"{page.relative_to(REPO)} `{span}`", span))
                elif span.startswith("--") and last is not None:
                    found.append((f"{page.relative_to(REPO)} `{span}` (after `{last}`)", f"{last} {span}"))
    return found


def _options(command: click.Command) -> set[str]:
    return {name for param in command.params for name in (*param.opts, *param.secondary_opts)} | {"-h", "--help"}


def check_command(text: str) -> list[str]:
    """What is wrong with one documented command line (an empty list when the CLI has it all)."""
    text = text.split(" #", 1)[0]
    tokens = [t.strip("[]") for t in shlex.split(text, posix=True) if t.strip("[]")]
    command: click.Command = cli_main
    chain: list[click.Command] = [cli_main]
    problems = []
    rest = tokens[1:]
    while rest:
        token = rest.pop(0)
        if token in (">", "2>", "&&", ";", "&"):
            break
        if token == "|" and rest and rest[0].startswith("-"):  # `[NAME ... | --all]`: an option instead
            continue
        if token == "|":  # `history | show | stats`: alternatives of the group above
            group = chain[-2] if len(chain) > 1 else cli_main
            alternative = rest.pop(0) if rest else ""
            if not (isinstance(group, click.Group) and alternative in group.commands):
                problems.append(f"no command {alternative!r}")
            continue
        option = re.match(r"^(--?[A-Za-z][\w-]*)", token)
        if option:
            name = option.group(1)
            if not any(name in _options(c) for c in chain):
                problems.append(f"{' '.join(c.name or '' for c in chain)}: no option {name}")
            continue
        if isinstance(command, click.Group):
            if token not in command.commands:
                problems.append(f"{command.name}: no command {token!r}")
                break
            command = command.commands[token]
            chain.append(command)
    return problems


def test_every_documented_command_exists_with_its_options() -> None:
    lines = command_lines()
    problems = [f"{where}: {problem}" for where, text in lines for problem in check_command(text)]
    assert problems == []
    subcommands = {t.split()[1] for _, t in lines}
    assert {
        "run",
        "validate",
        "check",
        "history",
        "show",
        "stats",
        "export",
        "conflicts",
        "worker",
        "ui",
    } <= subcommands


def test_the_command_check_refuses_a_wrong_option_and_a_wrong_subcommand() -> None:
    assert check_command("sync-pipelines run NAME [--full-sync] [--dry-run] --partition KEY") == []
    assert check_command("sync-pipelines history | show | stats | export   # run history") == []
    assert check_command("sync-pipelines run NAME --fullsync") == ["main run: no option --fullsync"]
    assert check_command("sync-pipelines conflicts settle directory_users 1") == ["conflicts: no command 'settle'"]


# -- make targets, links, environment variables -----------------------------------------------------------


def test_every_make_target_named_exists() -> None:
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    targets = set(re.findall(r"^([a-z][a-z-]*):", makefile, re.M))
    named: dict[str, str] = {}
    for block in all_blocks():
        if block.lang in SHELL_LANGS:
            for target in MAKE.findall(block.body):
                named.setdefault(target, str(block))
    for page in PAGES:
        for span in inline_code(page):
            for target in MAKE.findall(span if span.startswith("make ") else ""):
                named.setdefault(target, f"{page.relative_to(REPO)} `{span}`")
    assert {"demo", "test", "test-fast", "ui", "bench-history"} <= set(named)
    assert {t: where for t, where in named.items() if t not in targets} == {}


def test_every_relative_link_and_image_resolves() -> None:
    checked = 0
    broken = []
    for page in PAGES:
        for target in LINK.findall(prose(page)):
            if re.match(r"^[a-z]+:", target):
                continue
            path_part, _, anchor = target.partition("#")
            resolved = (page.parent / path_part).resolve() if path_part else page
            if not resolved.exists():
                broken.append(f"{page.relative_to(REPO)}: {target} (no such file)")
            elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
                broken.append(f"{page.relative_to(REPO)}: {target} (no such heading)")
            checked += 1
    assert broken == []
    assert checked >= 20


def _code_text() -> str:
    folders = ["sync_pipelines", "bench", "scripts", "deploy", "sync_pipelines_tests"]
    files = [REPO / "Makefile", REPO / "dagster.local.yaml"]
    for folder in folders:
        files += [p for p in (REPO / folder).rglob("*") if p.is_file() and p.suffix not in (".png", ".pyc")]
    return "\n".join(
        p.read_text(encoding="utf-8", errors="replace") for p in files if DOCS not in p.parents and p != Path(__file__)
    )


def test_every_project_environment_variable_named_is_read_by_the_code() -> None:
    named: dict[str, str] = {}
    for page in PAGES:
        for variable in ENV_VAR.findall(page.read_text(encoding="utf-8")):
            named.setdefault(variable, str(page.relative_to(REPO)))
    assert {"SYNC_PIPELINES_CONFIG_DIR", "SYNC_PIPELINES_STAGING_DIR", "DAGSTER_HOME"} <= set(named)
    code = _code_text()
    assert {v: page for v, page in named.items() if not re.search(rf"\b{v}\b", code)} == {}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_no_page_refers_to_a_readme_section_that_moved(page: Path) -> None:
    """Cross-references between pages are links: a quoted section name of the old README would dangle."""
    text = prose(page)
    assert re.findall(r'see "(?:Run history|Operating syncs|Scaling out|Staging retention|Secrets|Cron)', text) == []


# -- files and the benchmark scripts -----------------------------------------------------------------------

FILE_PATH = re.compile(r"^[\w./-]+\.(?:py|yaml|yml|toml|md)$")
SCRIPT = re.compile(r"\b((?:bench|scripts)/[\w-]+(?:\.py)?)((?:[ \t]+[^|;&>\n]*)?)")
"""A script and the rest of its line (up to a pipe, a redirection or the next command)."""


def _tracked_files() -> list[str]:
    listed = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True)
    return listed.stdout.split()


def _file_exists(name: str, tracked: list[str]) -> bool:
    """A project file (``engine/driver.py`` names ``sync_pipelines/engine/driver.py``) or an installed package's."""
    if any(path == name or path.endswith(f"/{name}") for path in tracked):
        return True
    spec = importlib.util.find_spec(name.split("/", 1)[0])
    return spec is not None and spec.origin is not None and (Path(spec.origin).parent.parent / name).exists()


def test_every_file_named_in_inline_code_exists() -> None:
    tracked = _tracked_files()
    named = {
        token: str(page.relative_to(REPO))
        for page in PAGES
        for span in inline_code(page)
        for token in span.split()
        if FILE_PATH.match(token)
    }
    assert {"connectors/bookkeeping.py", "sync_pipelines_tests/factories.py", "deploy/dagster.yaml"} <= set(named)
    assert {name: page for name, page in named.items() if not _file_exists(name, tracked)} == {}


def script_commands() -> list[tuple[str, str, list[str]]]:
    """``(where, script, options)`` of each ``bench/...`` or ``scripts/...`` command (continuation lines joined)."""
    found = []
    for block in all_blocks():
        if block.lang in SHELL_LANGS:
            for found_match in SCRIPT.finditer(block.body.replace("\\\n", " ")):
                options = re.findall(r"(?<!\S)--[a-z][\w-]*", found_match.group(2))
                found.append((str(block), found_match.group(1), options))
    for page in PAGES:
        for span in inline_code(page):
            match = SCRIPT.match(span)
            if match and not span.endswith("/"):  # `bench/results/` is a folder
                found.append((f"{page.relative_to(REPO)} `{span}`", match.group(1), re.findall(r"--[a-z][\w-]*", span)))
    return found


def test_every_benchmark_and_script_command_has_its_options() -> None:
    commands = script_commands()
    problems = []
    for where, script, options in commands:
        path = REPO / script
        if not path.is_file():
            problems.append(f"{where}: no file {script}")
            continue
        source = path.read_text(encoding="utf-8")
        problems += [f"{where}: {script} has no option {o}" for o in options if f'"{o}"' not in source]
    assert problems == []
    assert {"bench/bench_sync.py", "bench/bench_partitions.py", "bench/bench_history_view.py"} <= {
        s for _, s, _ in commands
    }
