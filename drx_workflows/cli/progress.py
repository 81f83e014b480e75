"""Progress bars for long loops, on stderr so stdout stays parseable.

Shown on a terminal; hidden when stderr is a file or pipe (logs, tests), unless
DRX_PROGRESS=1.
"""

import os

from tqdm import tqdm


def bar(iterable, label: str, total: int | None = None):
    disable = False if os.environ.get("DRX_PROGRESS") == "1" else None
    return tqdm(
        iterable, desc=label, total=total, unit="", leave=False, mininterval=0.5, dynamic_ncols=True, disable=disable
    )
