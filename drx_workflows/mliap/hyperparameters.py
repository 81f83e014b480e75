"""Hyperparameter overrides from the command line: key=value for every backend or backend.key=value, values read as JSON where they parse."""

from __future__ import annotations

import json

from drx_workflows.errors import DrxError


def parse_overrides(pairs, backends) -> dict[str, dict]:
    """``--set key=value`` (every backend) or ``--set backend.key=value``; values are JSON when they parse."""
    out = {b: {} for b in backends}
    for pair in pairs:
        if "=" not in pair:
            raise DrxError(f"--set {pair!r}: use key=value or backend.key=value")
        key, raw = pair.split("=", 1)
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        if "." in key:
            backend, key = key.split(".", 1)
            if backend not in out:
                raise DrxError(f"--set {pair!r}: backend {backend!r} is not among --backend {','.join(backends)}")
            out[backend][key] = value
        else:
            for b in backends:
                out[b][key] = value
    return out
