"""Run ``dynasync`` in this process under click's CliRunner isolation: its exit status and
what it wrote to stdout and stderr."""

from __future__ import annotations

from dataclasses import dataclass

from click.testing import CliRunner

from pipeline.cli.main import main


@dataclass(frozen=True, slots=True)
class Ran:
    """One run of the command."""

    code: int
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        return self.err.splitlines()


def dynasync(*argv: str, env: dict[str, str | None] | None = None) -> Ran:
    """``dynasync argv`` with ``env`` set (None: unset) for the run."""
    runner = CliRunner()
    with runner.isolation(env=env) as (out, err, _):
        code = main(list(argv))
    return Ran(code, out.getvalue().decode(), err.getvalue().decode())
