"""The study's comparison tables of trained potentials (Markdown) and their parity / per-n-TM plots (PNG)."""

from __future__ import annotations

from pathlib import Path

from drx_workflows.fileio import atomic_path


def _fmt(x, digits=1):
    return "–" if x is None else f"{x:.{digits}f}"


def slice_label(doc: dict) -> str:
    """The slice a potential was trained on; a grown slice's later generations and grid winners say so."""
    label = doc["slice"]
    if (doc.get("generation") or 1) > 1:
        label += f" (gen {doc['generation']})"
    if doc.get("grid_id"):
        label += " (grid best)"
    return label


def comparison_table(docs: list[dict]) -> str:
    head = (
        "| backend | slice | target | n train | n test | train E MAE (meV/atom) | test E MAE (meV/atom) "
        "| test E RMSE (meV/atom) | test range-norm. MAE | test F MAE (eV/Å) | training time (s) |"
    )
    rows = [head, "|" + "---|" * 11]
    for d in sorted(docs, key=lambda d: (d["slice"], d["n_train"], d["test"]["energy_mae"])):
        rows.append(
            f"| {d['backend']} | {slice_label(d)} | {d['target']} | {d['n_train']} | {d['n_test']} "
            f"| {_fmt(d['train']['energy_mae'])} | {_fmt(d['test']['energy_mae'])} | {_fmt(d['test']['energy_rmse'])} "
            f"| {_fmt(d['test']['energy_range_normalized_mae'], 4)} | {_fmt(d['test']['force_mae'], 3)} "
            f"| {_fmt(d['train_seconds'])} |"
        )
    return "\n".join(rows)


def per_ntm_table(docs: list[dict]) -> str:
    ntms = sorted({int(k) for d in docs for k in d["test"]["energy_mae_per_ntm"]})
    rows = ["| backend | slice | " + " | ".join(f"{n}-TM" for n in ntms) + " |", "|" + "---|" * (len(ntms) + 2)]
    for d in docs:
        per = d["test"]["energy_mae_per_ntm"]
        rows.append(f"| {d['backend']} | {slice_label(d)} | " + " | ".join(_fmt(per.get(str(n))) for n in ntms) + " |")
    return "\n".join(rows)


def safe_name(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)


def parity_plot(doc: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 4.2))
    for split, color in (("train", "tab:blue"), ("test", "tab:orange")):
        e = doc["parity"][split]["energies"]
        if e:
            axes[0].scatter([p[0] for p in e], [p[1] for p in e], s=8, alpha=0.7, color=color, label=split)
        f = doc["parity"][split]["forces"]
        if f:
            axes[1].scatter([p[0] for p in f], [p[1] for p in f], s=4, alpha=0.4, color=color, label=split)
    for ax, unit in ((axes[0], "energy (eV/atom)"), (axes[1], "force component (eV/Å)")):
        lo, hi = ax.get_xlim()
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        ax.set_xlabel(f"reference {unit}")
        ax.set_ylabel(f"predicted {unit}")
        ax.legend()
    title = f"{doc['backend']} on {slice_label(doc)} ({doc['target']}): test MAE {doc['test']['energy_mae']:.1f} meV/atom"
    if doc.get("surrogate"):
        title += " [surrogate reference, not DFT]"
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    _save(fig, path)
    return path


def per_ntm_plot(docs: list[dict], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    ntms = sorted({int(k) for d in docs for k in d["test"]["energy_mae_per_ntm"]})
    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.8 / max(1, len(docs))
    for i, d in enumerate(docs):
        per = d["test"]["energy_mae_per_ntm"]
        ax.bar(np.arange(len(ntms)) + i * width, [per.get(str(n), 0) for n in ntms], width,
               label=f"{d['backend']} ({slice_label(d)})")
    ax.set_xticks(np.arange(len(ntms)) + width * (len(docs) - 1) / 2, [str(n) for n in ntms])
    ax.set_xlabel("number of TM species")
    ax.set_ylabel("test energy MAE (meV/atom)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)
    return path


def _save(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
