"""``drx report``: the comparison of stored potentials (tables, parity and per-n-TM plots) and the voltage section, in one folder."""

from __future__ import annotations

import os
from pathlib import Path

from drx_workflows.analysis.potential_tables import (
    comparison_table,
    parity_plot,
    per_ntm_plot,
    per_ntm_table,
    safe_name,
    slice_label,
)
from drx_workflows.analysis.voltage_tables import voltage_markdown, voltage_plot
from drx_workflows.errors import DrxError
from drx_workflows.fileio import atomic_write_text
from drx_workflows.store.voltages import dft_voltages, stored_potential_voltages


def write_voltage_section(store, directory) -> tuple[str, object | None]:
    """Markdown of the voltage comparison (DFT voltages computed now, potential voltages as cached by
    ``drx voltage``) and the parity plot ``voltages.png`` (None when there is nothing to compare)."""
    from pathlib import Path

    reference, problems = dft_voltages(store)
    predicted = stored_potential_voltages(store)
    if not reference and not predicted and not problems:
        return "", None
    md = voltage_markdown(reference, predicted, problems)
    if store.potentials.count_documents({}) and not predicted:
        md += "\nPotential voltages: run `drx voltage --all` to relax the orderings with every potential.\n"
    png = voltage_plot(reference, predicted, Path(directory) / "voltages.png")
    if png is not None:
        md += f"\n![voltages]({Path(png).name})\n"
    return md, png


def write_report(store, directory: str | os.PathLike, query: dict | None = None) -> Path:
    """Tables and plots of every stored potential (or those matching ``query``) into one folder."""
    docs = list(store.potentials.find(query or {}, {"_id": 0}))
    if not docs:
        raise DrxError("no trained potentials in the store yet (run `drx train` first)")
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    lines = ["# ML-IAP comparison", ""]
    if any(d.get("surrogate") for d in docs):
        lines += ["Reference energies from the surrogate VASP engine (CHGNet), **not DFT**.", ""]
    lines += ["## Energy and force errors, training cost", "", comparison_table(docs), "",
              "## Test energy MAE per number of TM species (meV/atom)", "", per_ntm_table(docs), "", "## Plots", ""]
    for d in docs:
        png = parity_plot(d, out / f"parity_{safe_name(d['backend'])}_{safe_name(slice_label(d))}_{d['target']}.png")
        lines.append(f"![parity {d['backend']} {slice_label(d)}]({png.name})")
    per_ntm_plot(docs, out / "per_ntm_mae.png")
    lines.append("![per n-TM MAE](per_ntm_mae.png)")
    from drx_workflows.pipeline.report import write_voltage_section

    voltages, _ = write_voltage_section(store, out)  # table + voltages.png; "" when no LiTMO2/TMO2 data
    if voltages:
        lines += ["", voltages]
    report = out / "report.md"
    return atomic_write_text(report, "\n".join(lines) + "\n")
