"""The ``dynasync`` command as a whole: its help lists the operator's commands and hides the
development ones, ``--version``, every command takes ``--json`` and ``--help``, the help
starts without loading aiokafka, httpx, pydantic, rich or the connectors, the command modules
import each other without a cycle, and no option takes a secret's value."""

from __future__ import annotations

import ast
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import click
import pytest

from pipeline.cli.main import COMMANDS, build_cli
from tests.unit.cli.invoke import dynasync

Leaf = tuple[tuple[str, ...], click.Command]
CLI_DIR = Path(__file__).resolve().parents[3] / "pipeline" / "cli"


def _leaves(group: click.Group, ctx: click.Context, path: tuple[str, ...] = ()) -> list[Leaf]:
    out: list[Leaf] = []
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        assert cmd is not None, name
        if isinstance(cmd, click.Group):
            out += _leaves(cmd, click.Context(cmd, parent=ctx, info_name=name), (*path, name))
        else:
            out.append(((*path, name), cmd))
    return out


def _all_commands() -> list[Leaf]:
    cli = build_cli()
    return _leaves(cli, click.Context(cli, info_name="dynasync"))


def test_help_lists_the_commands_and_hides_development_ones() -> None:
    ran = dynasync("--help")
    assert ran.code == 0
    listed = [line.split()[0] for line in ran.out.split("Commands:")[1].splitlines() if line]
    assert listed == [n for n, c in COMMANDS.items() if not c.hidden]  # in declared order
    assert listed[:2] == ["org", "mailbox"] and {"dlq", "topics", "run", "demo"} <= set(listed)
    assert "worker" not in ran.out and "demo-echo" not in ran.out
    assert {n for n, c in COMMANDS.items() if c.hidden} == {"worker", "demo-echo"}
    assert dynasync("worker", "--help").code == 0  # hidden, still there


def test_mailbox_help_lists_its_commands() -> None:
    ran = dynasync("mailbox", "--help")
    assert ran.code == 0
    for name in ("add", "approve", "disable", "edit", "enable", "import", "list", "remove", "test"):
        assert f"  {name} " in ran.out
    assert "  status " in ran.out and "  show " in ran.out and "  resume " in ran.out
    assert "  plan " in ran.out
    assert "  resync " not in ran.out  # resync is top-level


def test_version() -> None:
    ran = dynasync("--version")
    assert (ran.code, ran.out.strip()) == (0, f"dynasync {version('dynasync')}")


@pytest.mark.parametrize(
    ("path", "command"), _all_commands(), ids=lambda v: " ".join(v) if isinstance(v, tuple) else ""
)
def test_every_command_takes_json_and_help(path: tuple[str, ...], command: click.Command) -> None:
    names = {o for p in command.params for o in getattr(p, "opts", [])}
    assert "--json" in names, path
    ran = dynasync(*path, "--help")
    assert ran.code == 0 and "--json" in ran.out
    assert ran.err == ""


def test_no_option_takes_a_secret() -> None:
    """Options named after a token, secret or password take a file path, or are hidden and
    refused (the old argv forms)."""
    for path, command in _all_commands():
        for param in command.params:
            for opt in getattr(param, "opts", []):
                if any(w in opt for w in ("token", "secret", "password")):
                    ok = opt.endswith("-file") or opt == "--token-prefix"
                    assert ok or getattr(param, "hidden", False), (path, opt)


def test_help_and_version_start_without_heavy_modules() -> None:
    probe = (
        "import sys; from pipeline.cli.main import main; "
        "code = main(['--help']); main(['mailbox', '--help']); main(['--version']); "
        "heavy = ('aiokafka', 'httpx', 'pydantic', 'rich', 'connectors', 'faust', "
        "'jsonschema', 'aiohttp'); "
        "print(sorted({m.split('.')[0] for m in sys.modules if m.split('.')[0] in heavy}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout


def test_the_command_modules_import_without_a_cycle() -> None:
    """The import graph of pipeline/cli (top-level imports only: the lazy ones inside
    functions cannot form an import-time cycle) has no cycle, and main.py imports no command
    module at all."""
    graph: dict[str, set[str]] = {}
    for path in CLI_DIR.glob("*.py"):
        tree = ast.parse(path.read_text())
        deps = set()
        for node in tree.body:
            module = node.module if isinstance(node, ast.ImportFrom) else None
            if module and module.startswith("pipeline.cli."):
                deps.add(module.rsplit(".", 1)[1])
        graph[path.stem] = deps
    assert graph["main"] <= {"common"}
    done: set[str] = set()

    def visit(name: str, stack: tuple[str, ...]) -> None:
        assert name not in stack, f"import cycle: {' -> '.join((*stack, name))}"
        if name in done:
            return
        for dep in graph.get(name, ()):
            visit(dep, (*stack, name))
        done.add(name)

    for name in graph:
        visit(name, ())


def test_command_files_are_named_after_their_commands() -> None:
    for name, spec in COMMANDS.items():
        module = spec.target.split(":")[0].rsplit(".", 1)[1]
        assert module == name.replace("-", "_"), (name, module)
