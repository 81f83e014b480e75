"""Slices: selection by composition / random fraction / Li-free, and the stratified split."""

from collections import Counter

import pytest

from drx_workflows.enumeration.sampling import EnumerationSettings, enumerate_drx
from drx_workflows.errors import DrxError
from drx_workflows.slices.definition import SliceDefinition, stratified_split


@pytest.fixture(scope="module")
def docs():
    recs = enumerate_drx(
        EnumerationSettings(tms=("Mn", "Ni", "Co"), n_tm=(1, 2, 3), per_ntm=20, toc_per_ntm=5, seed=2)
    ).records
    return [r.to_doc() for r in recs]


def test_composition_slice(docs):
    members = SliceDefinition("mnni", kind="composition", composition="LiMn0.5Ni0.5O2").select(docs)
    assert members and all(d["tms"] == ["Mn", "Ni"] and d["tm_counts"]["Mn"] == d["tm_counts"]["Ni"] for d in members)
    assert all(not d["li_free"] for d in members)
    expected = [d for d in docs if d["formula"].startswith("Li") and d["tm_counts"] == {"Mn": d["cation_sites"] // 4, "Ni": d["cation_sites"] // 4}]
    assert {d["drx_id"] for d in members} == {d["drx_id"] for d in expected}


def test_random_slice_takes_the_fraction_of_every_ntm_and_is_seeded(docs):
    s = SliceDefinition("r10", kind="random", fraction=0.1, seed=1)
    a, b = s.select(docs), s.select(docs)
    assert [d["drx_id"] for d in a] == [d["drx_id"] for d in b]
    per = Counter(d["n_tm"] for d in a)
    total = Counter(d["n_tm"] for d in docs)
    assert per == {n: round(0.1 * total[n]) for n in total}
    other = SliceDefinition("r10", kind="random", fraction=0.1, seed=2).select(docs)
    assert {d["drx_id"] for d in other} != {d["drx_id"] for d in a}


def test_li_free_and_all(docs):
    assert {d["drx_id"] for d in SliceDefinition("toc", kind="li_free").select(docs)} == {
        d["drx_id"] for d in docs if d["li_free"]
    }
    assert len(SliceDefinition("everything").select(docs)) == len(docs)


def test_stratified_split_keeps_every_ntm_in_test(docs):
    train, test = stratified_split(docs, lambda d: d["n_tm"], test_fraction=0.1, seed=0)
    assert len(train) + len(test) == len(docs)
    assert not {d["drx_id"] for d in train} & {d["drx_id"] for d in test}
    for n, count in Counter(d["n_tm"] for d in docs).items():
        assert Counter(d["n_tm"] for d in test)[n] == round(0.1 * count)
    again = stratified_split(docs, lambda d: d["n_tm"], test_fraction=0.1, seed=0)
    assert [d["drx_id"] for d in again[1]] == [d["drx_id"] for d in test]


@pytest.mark.parametrize(
    "definition, message",
    [
        (SliceDefinition("x", kind="composition"), "needs a composition"),
        (SliceDefinition("x", kind="composition", composition="LiQq2"), "Qq not among"),
        (SliceDefinition("x", kind="composition", composition="Li((Mn"), "does not parse"),
        (SliceDefinition("x", kind="random"), "needs a fraction"),
        (SliceDefinition("x", kind="weird"), "unknown"),
        (SliceDefinition("a b"), "slice name"),
    ],
)
def test_bad_slice_definitions(definition, message):
    with pytest.raises(DrxError, match=message):
        definition.validate()


def test_too_few_structures_for_a_split():
    with pytest.raises(DrxError, match="cannot be split"):
        stratified_split([{"n_tm": 1}], lambda d: d["n_tm"])


def test_split_keeps_unseen_elements_out_of_the_test_set():
    items = [{"n_tm": 1, "el": ["Li", "Mn", "O"]} for _ in range(9)] + [{"n_tm": 1, "el": ["Li", "Sc", "O"]}]
    for seed in range(10):
        train, test = stratified_split(items, lambda d: d["n_tm"], 0.3, seed=seed, elements_of=lambda d: d["el"])
        seen = {e for d in train for e in d["el"]}
        assert all(set(d["el"]) <= seen for d in test) and test
