"""Balanced, seeded sampling of symmetry-distinct DRX orderings over 1–9 TM species.

Per n-TM a quota (``per_ntm``) is split as evenly as possible over the TM combinations
of that size; each combination gets orderings whose TM counts differ by at most one.
Most orderings are random decorations of random Hart–Forcade supercells
(``hnf-random``); combinations with many TMs (default n >= 8, which need 16–18
cation sites) are ordered from a disordered supercell by pymatgen's
``OrderDisorderedStructureTransformation``, lowest Ewald energy first (``ewald``), as
the reference study did.  Top-of-charge structures (``toc``) are LiTMO2 orderings with
every Li removed, spread over the TM compositions (equimolar first) so that as many
compositions as possible have both states for a voltage.  Every random choice comes from
``numpy.random.default_rng`` seeded with (seed, n, combination), so the same seed gives the
same dataset.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np

from drx_workflows.compositions import tm_key
from drx_workflows.constants import LITMO2_LATTICE_A, TMS
from drx_workflows.enumeration.records import DrxRecord
from drx_workflows.enumeration.rocksalt import (
    LABEL_OF,
    LABELS,
    VACANCY,
    Supercell,
    structure_id,
    supercells_up_to,
)
from drx_workflows.errors import DrxError

SOURCE_RANDOM = "hnf-random"
SOURCE_EWALD = "ewald"
SOURCE_TOC = "toc"

# Random draws allowed per wanted structure before a quota is declared unreachable.
ATTEMPTS_PER_STRUCTURE = 40


@dataclass(frozen=True)
class EnumerationSettings:
    tms: tuple[str, ...] = TMS
    n_tm: tuple[int, ...] = tuple(range(1, 10))
    per_ntm: int = 1100
    toc_per_ntm: int = 500
    max_cation_sites: int = 18
    ewald_min_ntm: int = 8
    seed: int = 0

    def validate(self) -> None:
        unknown = [t for t in self.tms if t not in TMS]
        if unknown:
            raise DrxError(
                f"--tms: {', '.join(unknown)} not among the study's transition metals ({' '.join(TMS)})"
            )
        if len(set(self.tms)) != len(self.tms) or not self.tms:
            raise DrxError("--tms: give each transition metal once, at least one")
        too_many = [n for n in self.n_tm if n > len(self.tms)]
        if too_many:
            raise DrxError(f"--n-tm {max(too_many)} is larger than the {len(self.tms)} TMs given with --tms")
        if any(n < 1 for n in self.n_tm):
            raise DrxError("--n-tm values must be at least 1")
        need = 2 * max(self.n_tm)
        if self.max_cation_sites < need:
            raise DrxError(
                f"--max-cation-sites {self.max_cation_sites} is too small for {max(self.n_tm)} TMs: "
                f"LiTMO2 puts Li on half the cation sites, so {max(self.n_tm)} TMs need at least {need}"
            )
        if self.max_cation_sites > 24:
            raise DrxError("--max-cation-sites above 24 is not supported (supercell enumeration explodes)")
        if self.per_ntm < 1:
            raise DrxError("--per-ntm must be at least 1")
        if self.toc_per_ntm < 0 or self.toc_per_ntm > self.per_ntm:
            raise DrxError(f"--toc-per-ntm must be between 0 and --per-ntm ({self.per_ntm})")


@dataclass
class EnumerationResult:
    records: list[DrxRecord]
    settings: EnumerationSettings
    counts: Counter = field(default_factory=Counter)  # (n_tm, source) -> count

    def summary_rows(self) -> list[tuple]:
        sources = [SOURCE_RANDOM, SOURCE_EWALD, SOURCE_TOC]
        rows = []
        for n in sorted({n for n, _ in self.counts}):
            per = [self.counts.get((n, s), 0) for s in sources]
            rows.append((n, *per, sum(per)))
        totals = [sum(r[i] for r in rows) for i in range(1, 5)]
        rows.append(("all", *totals))
        return rows

    def summary_table(self) -> str:
        head = ("n_TM", SOURCE_RANDOM, SOURCE_EWALD, SOURCE_TOC, "total")
        rows = [head, *self.summary_rows()]
        widths = [max(len(str(r[i])) for r in rows) for i in range(len(head))]
        return "\n".join("  ".join(str(v).rjust(w) for v, w in zip(r, widths)) for r in rows)


def even_counts(n_sites: int, tms: tuple[str, ...], rng: np.random.Generator) -> dict[str, int]:
    """Spread ``n_sites`` over ``tms`` as evenly as possible; who gets the extra sites is random."""
    base, extra = divmod(n_sites, len(tms))
    lucky = set(rng.choice(len(tms), size=extra, replace=False).tolist()) if extra else set()
    return {tm: base + (i in lucky) for i, tm in enumerate(tms)}


def vegard_a(counts: dict[str, int]) -> float:
    total = sum(counts.values())
    return round(sum(LITMO2_LATTICE_A[tm] * c for tm, c in counts.items()) / total, 4)


def split_quota(total: int, n_groups: int, rng: np.random.Generator) -> list[int]:
    base, extra = divmod(total, n_groups)
    lucky = set(rng.choice(n_groups, size=extra, replace=False).tolist()) if extra else set()
    return [base + (i in lucky) for i in range(n_groups)]


def make_record(
    sc: Supercell, canonical: np.ndarray, a: float, source: str, parent_id: str | None = None
) -> DrxRecord:
    """Build the record of a canonical decoration: cations sorted Li, TMs, then O."""
    symbols = [LABELS[i] for i in canonical]
    order = [i for i in np.argsort(canonical, kind="stable") if symbols[i] != VACANCY]
    species = [symbols[i] for i in order]
    n_o = sc.n_sites
    tm_counts = Counter(s for s in species if s != "Li")
    tms = [t for t in TMS if t in tm_counts]
    n_li = species.count("Li")
    formula_counts = {"Li": n_li, **{t: tm_counts[t] for t in tms}, "O": n_o}
    formula = "".join(f"{el}{c}" for el, c in formula_counts.items() if c)
    gcd = math.gcd(*[c for c in formula_counts.values() if c])
    reduced = "".join(
        f"{el}{c // gcd if c // gcd != 1 else ''}" for el, c in formula_counts.items() if c
    )
    frac = np.vstack([sc.cation_frac[order], sc.anion_frac])
    return DrxRecord(
        drx_id=structure_id(sc.key(canonical)),
        formula=formula,
        reduced_formula=reduced,
        tms=tms,
        n_tm=len(tms),
        tm_counts={t: int(tm_counts[t]) for t in tms},
        cation_sites=sc.n_sites,
        li_free=n_li == 0,
        source=source,
        lattice_a=a,
        parent_id=parent_id,
        supercell=sc.hnf.tolist(),
        lattice=np.round(sc.cell(a), 8).tolist(),
        species=species + ["O"] * n_o,
        frac_coords=np.round(frac, 10).tolist(),
    )


def _random_orderings(
    combo: tuple[str, ...], quota: int, cells: list[Supercell], rng: np.random.Generator, seen: set
) -> list[DrxRecord]:
    out: list[DrxRecord] = []
    for _ in range(ATTEMPTS_PER_STRUCTURE * quota + 100):
        if len(out) == quota:
            break
        sc = cells[rng.integers(len(cells))]
        half = sc.n_sites // 2
        counts = even_counts(half, combo, rng)
        labels = np.array(
            [LABEL_OF["Li"]] * half + [LABEL_OF[tm] for tm, c in counts.items() for _ in range(c)]
        )
        labels = labels[rng.permutation(sc.n_sites)]
        canonical = sc.canonical(labels)
        if canonical is None:
            continue
        key = sc.key(canonical)
        if key in seen:
            continue
        seen.add(key)
        out.append(make_record(sc, canonical, vegard_a(counts), SOURCE_RANDOM))
    return out


def _ewald_orderings(
    combo: tuple[str, ...], quota: int, cells: list[Supercell], rng: np.random.Generator, seen: set
) -> list[DrxRecord]:
    from pymatgen.core import Lattice, Structure
    from pymatgen.transformations.standard_transformations import (
        OrderDisorderedStructureTransformation,
    )

    transformation = OrderDisorderedStructureTransformation(
        algo=OrderDisorderedStructureTransformation.ALGO_BEST_FIRST
    )
    out: list[DrxRecord] = []
    per_cell = max(1, math.ceil(quota / 8))  # spread over several supercells for variety
    for idx in rng.permutation(len(cells)):
        if len(out) == quota:
            break
        sc = cells[idx]
        half = sc.n_sites // 2
        counts = even_counts(half, combo, rng)
        occupancy = {"Li+": 0.5, **{f"{tm}3+": c / sc.n_sites for tm, c in counts.items()}}
        disordered = Structure(
            Lattice(sc.cell(4.0)),
            [occupancy] * sc.n_sites + ["O2-"] * sc.n_sites,
            np.vstack([sc.cation_frac, sc.anion_frac]),
        )
        ranked = transformation.apply_transformation(disordered, return_ranked_list=4 * per_cell)
        taken = 0
        for entry in ranked:
            if taken == per_cell or len(out) == quota:
                break
            ordered = entry["structure"]
            labels = labels_from_sites(sc, [site.specie.symbol for site in ordered], ordered.frac_coords)
            canonical = sc.canonical(labels)
            if canonical is None or sc.key(canonical) in seen:
                continue
            seen.add(sc.key(canonical))
            out.append(make_record(sc, canonical, vegard_a(counts), SOURCE_EWALD))
            taken += 1
    return out


def _top_of_charge(
    parents: list[DrxRecord], quota: int, cells_by_hnf: dict, rng: np.random.Generator, seen: set
) -> list[DrxRecord]:
    out: list[DrxRecord] = []
    for idx in _spread_over_compositions(parents, rng):
        if len(out) == quota:
            break
        parent = parents[idx]
        sc = cells_by_hnf[_hnf_key(parent.supercell)]
        labels = labels_from_sites(sc, parent.species, parent.frac_coords)
        labels[labels == LABEL_OF["Li"]] = LABEL_OF[VACANCY]
        canonical = sc.canonical(labels)
        # Removing Li can leave a superperiodic or already-seen TM arrangement: skip those.
        if canonical is None or sc.key(canonical) in seen:
            continue
        seen.add(sc.key(canonical))
        out.append(make_record(sc, canonical, parent.lattice_a, SOURCE_TOC, parent_id=parent.drx_id))
    return out


def _tm_fractions(record: DrxRecord) -> dict:
    counts = Counter(el for el in record.species if el not in ("Li", "O"))
    total = sum(counts.values())
    return {el: c / total for el, c in counts.items()}


def _spread_over_compositions(parents: list[DrxRecord], rng: np.random.Generator) -> list[int]:
    """Parent indices in the order their Li is removed: one per TM composition before a second of any,
    the most even compositions first, random otherwise.

    A voltage needs a LiTMO2 and a TMO2 of the same composition, so a Li-free quota spread over
    compositions gives the most voltages; equimolar ones (the study's LiMn0.5Ni0.5O2) come first.
    """
    groups: dict[str, list[int]] = {}
    unevenness: dict[str, float] = {}
    for idx in rng.permutation(len(parents)):
        fractions = _tm_fractions(parents[idx])
        key = tm_key(fractions)  # the voltages' own key, so the pairs they look for are the ones made here
        groups.setdefault(key, []).append(int(idx))
        unevenness[key] = max(fractions.values()) - min(fractions.values())
    # sorted() is stable, so compositions equally even keep their random order
    keys = sorted(groups, key=unevenness.__getitem__)
    rounds = max(len(g) for g in groups.values()) if groups else 0
    return [groups[k][r] for r in range(rounds) for k in keys if r < len(groups[k])]


def _hnf_key(hnf) -> bytes:
    return np.asarray(hnf, dtype=np.int8).tobytes()


def labels_from_sites(sc: Supercell, symbols, frac_coords) -> np.ndarray:
    """Cation-site labels of a structure on supercell ``sc`` (unlisted sites are vacant)."""
    n = sc.n_sites
    index = {tuple(g): i for i, g in enumerate(np.rint(sc.cation_frac * n).astype(int) % n)}
    labels = np.full(n, LABEL_OF[VACANCY], dtype=int)
    for el, f in zip(symbols, frac_coords):
        if el != "O":
            labels[index[tuple(np.rint(np.asarray(f) * n).astype(int) % n)]] = LABEL_OF[el]
    return labels


def enumerate_drx(
    settings: EnumerationSettings, progress: Callable[[Iterable, str, int], Iterable] | None = None
) -> EnumerationResult:
    """Enumerate the dataset. ``progress(iterable, label, total)`` may wrap loops (e.g. tqdm)."""
    settings.validate()
    wrap = progress or (lambda it, _label, _total: it)
    all_cells = supercells_up_to(settings.max_cation_sites, even_only=True)
    cells_by_hnf = {_hnf_key(sc.hnf): sc for sc in all_cells}
    records: list[DrxRecord] = []
    counts: Counter = Counter()
    seen: set = set()
    tms = tuple(t for t in TMS if t in settings.tms)  # canonical order keeps ids seed-stable
    for n in sorted(set(settings.n_tm)):
        combos = list(itertools.combinations(tms, n))
        rng = np.random.default_rng([settings.seed, n])
        quotas = split_quota(settings.per_ntm, len(combos), rng)
        cells = [sc for sc in all_cells if sc.n_sites // 2 >= n]
        use_ewald = n >= settings.ewald_min_ntm
        made: list[DrxRecord] = []
        for ci, (combo, quota) in enumerate(wrap(list(zip(combos, quotas)), f"{n}-TM", len(combos))):
            if quota == 0:
                continue
            combo_rng = np.random.default_rng([settings.seed, n, ci])
            got = _ewald_orderings(combo, quota, cells, combo_rng, seen) if use_ewald else []
            if len(got) < quota:
                got += _random_orderings(combo, quota - len(got), cells, combo_rng, seen)
            if len(got) < quota:
                raise DrxError(
                    f"quota cannot be met: only {len(got)} distinct orderings of {'-'.join(combo)} found for "
                    f"--per-ntm {settings.per_ntm} with --max-cation-sites {settings.max_cation_sites}; "
                    f"lower --per-ntm or raise --max-cation-sites"
                )
            made += got
        for rec in made:
            counts[(n, rec.source)] += 1
        records += made
        if settings.toc_per_ntm:
            toc = _top_of_charge(made, settings.toc_per_ntm, cells_by_hnf, np.random.default_rng([settings.seed, n, 10**6]), seen)
            if len(toc) < settings.toc_per_ntm:
                raise DrxError(
                    f"quota cannot be met: only {len(toc)} distinct Li-free {n}-TM structures for "
                    f"--toc-per-ntm {settings.toc_per_ntm}; lower it or raise --per-ntm"
                )
            counts[(n, SOURCE_TOC)] += len(toc)
            records += toc
    return EnumerationResult(records=records, settings=settings, counts=counts)
