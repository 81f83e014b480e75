"""The README's split of the real DFT sample, shared by every *_drx_dft benchmark.

The sane configurations of ../shared/data/drx_dft (unphysical ones left out, as `drx import`
does), split 90/10 with a seed, stratified by n-TM: 295 training and 31 test cells for seed 0.
"""

from __future__ import annotations

from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "drx_dft"


def readme_split(seed: int = 0, data: Path = DATA):
    """(train, test, excluded ids) of the sample in ``data``."""
    from drx_workflows.mliap.data import read_xsf_dir, split_sane
    from drx_workflows.slices.definition import stratified_split

    sane, excluded = split_sane(read_xsf_dir(data))
    train, test = stratified_split(sane, lambda c: c.n_tm, test_fraction=0.1, seed=seed)
    return train, test, excluded
