"""The runtime does not load msgraph-sdk or kiota (a test dependency: about 390 MB installed);
it reaches Graph through its own transport with azure-identity credentials."""

from __future__ import annotations

import subprocess
import sys


def test_the_runtime_and_its_cli_import_no_graph_sdk() -> None:
    probe = (
        "import sys, pipeline.runtime, pipeline.cli.main, pipeline.cli.run, "
        "pipeline.cli.receiver, pipeline.sinks; "
        "sdk = ('msgraph', 'kiota'); "
        "print(sorted({m.split('.')[0] for m in sys.modules if m.startswith(sdk)}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]", out.stdout
