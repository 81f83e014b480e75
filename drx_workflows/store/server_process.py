"""The server process that ``drx server start`` runs: secantusdb's own command line, in this package.

Started as ``python -m drx_workflows.store.server_process --host ... --port ... --storage-path ...``
so the project can adjust the server where a measured problem calls for it before it serves
(``server_patches``; ``DRX_SERVER_UNPATCHED=1`` serves it as shipped, for comparison).
"""

from __future__ import annotations

import os
import sys


def main(argv: list[str] | None = None) -> int:
    from secantus import cli

    if os.environ.get("DRX_SERVER_UNPATCHED") != "1":
        from drx_workflows.store import server_patches

        print(f"drx: server patches applied: {', '.join(server_patches.apply()) or 'none'}", file=sys.stderr)

    return cli.main(sys.argv[1:] if argv is None else argv) or 0


if __name__ == "__main__":
    sys.exit(main())
