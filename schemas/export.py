"""Write (or check) the JSON Schema files derived from the models.

``python -m schemas.export`` rewrites ``schemas/json/*.schema.json``;
``python -m schemas.export --check`` exits 1 when a committed file differs from the models.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from schemas.derive import derive_schema
from schemas.models import MESSAGE_TYPES

JSON_DIR = Path(__file__).parent / "json"


def render(name: str) -> str:
    """The canonical text of one schema file."""
    return json.dumps(derive_schema(name, MESSAGE_TYPES[name]), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m schemas.export", description=__doc__)
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args(argv)
    stale = []
    for name in MESSAGE_TYPES:
        path = JSON_DIR / f"{name}.schema.json"
        text = render(name)
        if args.check:
            if not path.exists() or path.read_text("utf-8") != text:
                stale.append(path.name)
        else:
            path.write_text(text, "utf-8")
    if stale:
        print("out of date with schemas/models.py: " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
