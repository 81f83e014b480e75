"""Fixes for FireWorks 2.1.4 on this stack, applied when the project's firetasks are imported.

Offline mode (``rlaunch singleshot --offline`` on compute nodes without database access):
FireWorks' rocket opens ``FW_offline.json`` with ``zopen(path)``, but monty's ``zopen`` now
requires a ``mode`` (``TypeError: zopen() missing 1 required positional argument: 'mode'``), so
every offline rocket died before its first task. The rocket reads ``FW.json`` -- and so imports
the project's firetasks -- before that first ``zopen``, which lets this module hand the rocket
a ``zopen`` whose mode defaults to text, as it did. Nothing changes where ``zopen`` still has
a default mode.
"""

from __future__ import annotations

import inspect


def _mode_is_required(func) -> bool:
    try:
        param = inspect.signature(func).parameters.get("mode")
    except (TypeError, ValueError):
        return False
    return param is not None and param.default is inspect.Parameter.empty


def patch_offline_rocket() -> bool:
    """Make FireWorks' offline rocket work with a ``zopen`` that needs a mode; True when patched."""
    import fireworks.core.rocket as rocket

    current = rocket.zopen
    if getattr(current, "drx_text_default", False) or not _mode_is_required(current):
        return False

    def zopen(filename, mode: str = "rt", **kwargs):
        return current(filename, mode, **kwargs)

    zopen.drx_text_default = True
    rocket.zopen = zopen
    return True
