"""Parsing of command-line values shared by several subcommands."""

from __future__ import annotations

from drx_workflows.errors import DrxError


def int_list(value: str, option: str) -> tuple[int, ...]:
    try:
        out = []
        for part in value.split(","):
            if "-" in part:
                lo, hi = part.split("-")
                out += range(int(lo), int(hi) + 1)
            else:
                out.append(int(part))
        return tuple(out)
    except ValueError:
        raise DrxError(f"{option} takes numbers like 1,2,3 or 1-9, got {value!r}") from None


def tm_list(value: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in value.replace(" ", ",").split(",") if t.strip())
