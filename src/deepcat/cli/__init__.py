"""The `deepcat` command: parsing (`parser.py`) and printing (`commands.py`, `tables.py`) only.

Every verb is a function of the Python API (`deepcat.api`) with the same options; torch and friends
load inside each command, so `deepcat --help` is instant.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import cast

from deepcat.cli.parser import build_parser
from deepcat.errors import DeepcatError

__all__ = ["build_parser", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return cast(int, args.func(args))
    except DeepcatError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
