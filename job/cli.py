"""The `job` command: the deployment's own commands (job.runtime.main) plus the tools around it (`job view`).

The runtime's entrypoint stays free of the tooling: only this front door, which is never shipped to a
cluster, knows about the live view.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from job.runtime import main as runtime_main
from job.view.cli import main as view_main

VIEW_HELP = "serve a live web page of the deployment (`job view --help`)"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["view"]:
        return view_main(args[1:])
    return runtime_main.cli(args, tools={"view": VIEW_HELP})


if __name__ == "__main__":
    sys.exit(main())
