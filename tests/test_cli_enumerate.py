"""`drx enumerate` and friends from the command line: results, summaries and one-line errors."""

import json

import pytest
from conftest import run_drx


def _stored(path):
    if not path.exists():
        return 0
    data = json.loads(path.read_text())
    return len(data.get("drx", {}).get("structures", {}).get("documents", []))


def test_enumerate_stores_exports_and_summarises(tmp_path):
    store = tmp_path / "s" / "store.json"
    out = tmp_path / "set.extxyz"
    args = ["--store", store, "enumerate", "--tms", "Mn,Ni,Co", "--n-tm", "1-3", "--per-ntm", "4"]
    r = run_drx(*args, "--toc-per-ntm", "1", "--out", out, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "n_TM" in r.stdout and "hnf-random" in r.stdout
    assert "15 structures enumerated" in r.stdout and "15 new" in r.stdout
    assert _stored(store) == 15

    from ase.io import read

    frames = read(out, index=":")
    assert len(frames) == 15
    assert {f.info["n_tm"] for f in frames} == {1, 2, 3}

    again = run_drx(*args, "--toc-per-ntm", "1", cwd=tmp_path)  # same seed: nothing new
    assert again.returncode == 0 and "0 new" in again.stdout
    assert _stored(store) == 15


@pytest.mark.parametrize(
    "args, message",
    [
        (["--tms", "Mn,Qq"], "Qq not among"),
        (["--tms", "Li,Mn"], "Li not among"),
        (["--tms", "Mn,Ni", "--n-tm", "3"], "--n-tm 3 is larger than the 2 TMs"),
        (["--n-tm", "9", "--max-cation-sites", "12"], "--max-cation-sites 12 is too small for 9 TMs"),
        (["--n-tm", "x"], "--n-tm takes numbers"),
        (["--tms", "Mn", "--n-tm", "1", "--per-ntm", "60", "--max-cation-sites", "4"], "quota cannot be met"),
        (["--tms", "Mn", "--n-tm", "1", "--out", "/nonexistent-dir/x.extxyz"], "does not exist"),
        (["--tms", "Mn", "--n-tm", "1", "--out", "x.cif"], "unknown format"),
    ],
)
def test_bad_input_one_line_error_nothing_written(tmp_path, args, message):
    store = tmp_path / "s" / "store.json"
    r = run_drx("--store", store, "enumerate", *args, cwd=tmp_path)
    assert r.returncode == 2, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("drx: error:"), r.stderr
    assert message in lines[0]
    assert _stored(store) == 0
    assert not list(tmp_path.glob("*.cif"))


def test_store_and_launchpad_together_is_an_error(tmp_path):
    r = run_drx("--store", "a.json", "--launchpad", "b.yaml", "info", cwd=tmp_path)
    assert r.returncode == 2 and "not both" in r.stderr


def test_every_subcommand_has_help(tmp_path):
    from drx_workflows.cli.main import cli

    for name in cli.commands:
        if name == "lpad":  # passes everything to FireWorks' lpad, including --help
            continue
        r = run_drx(name, "--help", cwd=tmp_path)
        assert r.returncode == 0 and "Usage:" in r.stdout, name


def test_lpad_passthrough_on_the_embedded_store(tmp_path):
    store = tmp_path / "store.json"
    r = run_drx("--store", store, "lpad", "get_wflows", "-d", "count", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith("0")
