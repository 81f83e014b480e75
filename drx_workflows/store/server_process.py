"""The server process that ``drx server start`` runs: secantusdb's own command line, in this package.

Started as ``python -m drx_workflows.store.server_process --host ... --port ... --storage-path ...``
so the project can adjust the server where a measured problem calls for it before it serves.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from secantus import cli

    return cli.main(sys.argv[1:] if argv is None else argv) or 0


if __name__ == "__main__":
    sys.exit(main())
