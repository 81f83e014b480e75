"""The voltage comparison of drx report: errors against the reference, a Markdown table and a parity plot."""

from __future__ import annotations

from drx_workflows.voltages.energies import VoltageResult


def compare(reference: list[VoltageResult], predicted: list[VoltageResult]) -> dict:
    """label -> {"n", "mae", "mean_relative_error", "pairs": [(key, V_ref, V_pred)]} over shared compositions."""
    ref = {r.composition: r.voltage for r in reference}
    out: dict = {}
    for r in predicted:
        if r.composition in ref:
            out.setdefault(r.source, {"pairs": []})["pairs"].append((r.composition, ref[r.composition], r.voltage))
    for stats in out.values():
        pairs = stats["pairs"]
        stats["n"] = len(pairs)
        stats["mae"] = sum(abs(p - v) for _, v, p in pairs) / len(pairs)
        rel = [abs(p - v) / abs(v) for _, v, p in pairs if abs(v) > 1e-9]
        stats["mean_relative_error"] = sum(rel) / len(rel) if rel else None
    return out


def voltage_markdown(reference: list[VoltageResult], predicted: list[VoltageResult], problems: dict | None = None) -> str:
    """The voltage section of ``drx report``: per-composition table and per-potential errors."""
    surrogate = any(r.surrogate for r in reference)
    ref_name = "surrogate engine (CHGNet, not DFT)" if surrogate else "DFT"
    labels = sorted({r.source for r in predicted})
    ref = {r.composition: r for r in reference}
    pred = {(r.source, r.composition): r for r in predicted}
    keys = sorted(set(ref) | {r.composition for r in predicted})
    lines = ["## Average Li-intercalation voltages (V)", ""]
    lines.append(f"LiTMO2 <-> TMO2 + Li (bcc); lowest-energy ordering of each; reference column: {ref_name}.")
    lines.append("Potentials relax every enumerated ordering and bcc Li themselves; \"ref Li\" columns use the "
                 "same relaxations with the bcc Li energy of the reference calculation instead of the potential's.")
    lines.append("")
    if not keys:
        lines += ["No composition has both LiTMO2 and TMO2 data yet.", ""]
    else:
        lines.append("| composition | reference V | " + " | ".join(labels) + " |")
        lines.append("|" + "---|" * (len(labels) + 2))
        for k in keys:
            cells = [f"{ref[k].voltage:.3f}" if k in ref else "–"]
            cells += [f"{pred[(lab, k)].voltage:.3f}" if (lab, k) in pred else "–" for lab in labels]
            lines.append(f"| Li{k}O2 | " + " | ".join(cells) + " |")
        lines.append("")
    stats = compare(reference, predicted)
    if stats:
        lines += [f"Errors against the reference ({ref_name}):", "",
                  "| potential | compositions | MAE (V) | mean relative error (%) |", "|---|---|---|---|"]
        for lab in labels:
            s = stats.get(lab)
            if s:
                mre = "–" if s["mean_relative_error"] is None else f"{100 * s['mean_relative_error']:.1f}"
                lines.append(f"| {lab} | {s['n']} | {s['mae']:.3f} | {mre} |")
        lines.append("")
    if problems:
        lines += ["Not computed:", ""] + [f"- {k}: {v}" for k, v in sorted(problems.items(), key=str)] + [""]
    return "\n".join(lines)


def voltage_plot(reference: list[VoltageResult], predicted: list[VoltageResult], path) -> object | None:
    """Potential vs reference voltage, one colour per potential; None when nothing to compare."""
    stats = compare(reference, predicted)
    if not stats:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from drx_workflows.fileio import atomic_path

    fig, ax = plt.subplots(figsize=(5, 5))
    values = []
    for lab, s in sorted(stats.items()):
        xs, ys = [v for _, v, _ in s["pairs"]], [p for *_, p in s["pairs"]]
        values += xs + ys
        mre = s["mean_relative_error"]
        ax.scatter(xs, ys, s=25, label=f"{lab}: MAE {s['mae']:.2f} V" + ("" if mre is None else f", {100 * mre:.0f} %"))
    lo, hi = min(values) - 0.3, max(values) + 0.3
    ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    surrogate = any(r.surrogate for r in reference)
    ax.set_xlabel("reference voltage (V)" + (" [surrogate CHGNet, not DFT]" if surrogate else " [DFT]"))
    ax.set_ylabel("potential voltage (V)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
    return path
