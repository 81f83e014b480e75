"""Submission: idempotent, batched with rollback, file export for `lpad add`, dry runs, bad input."""

import itertools
import json

import click
import pytest
from click.testing import CliRunner
from fireworks import Workflow
from pymatgen.core import Lattice, Structure

from drx_workflows.enumeration.records import structure_to_compact
from drx_workflows.errors import DrxError
from drx_workflows.pipeline.relax import submit as sub
from drx_workflows.pipeline.relax.workflows import relax_workflow
from drx_workflows.vasp.checks import check_drx_structure

TM_PAIRS = list(itertools.combinations(["Mn", "Ni", "Co", "Fe", "Cr", "V", "Ti"], 2))


def _base():
    # conventional rocksalt cell (4 Li + 4 O) written out: Structure.from_spacegroup takes seconds
    s = Structure(
        Lattice.cubic(4.15),
        ["Li"] * 4 + ["O"] * 4,
        [[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0], [0.5, 0.5, 0.5], [0.5, 0, 0], [0, 0.5, 0], [0, 0, 0.5]],
    )
    s.make_supercell([2, 1, 1])  # 8 cation sites
    return s


def make_doc(i, slices=()):
    s = _base()
    a, b = TM_PAIRS[i % len(TM_PAIRS)]
    s.replace(i % 8, a)
    s.replace((i + 3) % 8, b)
    return {
        "drx_id": f"drx-{i:012x}",
        "formula": s.composition.formula.replace(" ", ""),
        "tms": sorted([a, b]),
        "n_tm": 2,
        "li_free": False,
        "source": "hnf-random",
        "slices": list(slices),
        "structure": structure_to_compact(s),
    }


def fill(store, docs):
    for d in docs:
        store.structures.update_one({"drx_id": d["drx_id"]}, {"$set": d}, upsert=True)


@pytest.fixture
def store(tmp_path, monkeypatch, fresh_store):
    monkeypatch.chdir(tmp_path)
    return fresh_store


def n_fireworks(store):
    return store.launchpad().fireworks.count_documents({})


def test_resubmission_is_idempotent_and_overlap_adds_only_new(store):
    first = [make_doc(i) for i in range(6)]
    fill(store, first)
    r1 = sub.submit_structures(store, sub.select_structures(store), batch_size=4, progress=False)
    assert (r1.added, r1.batches, r1.already_submitted) == (6, 2, 0)
    assert n_fireworks(store) == 6
    r2 = sub.submit_structures(store, sub.select_structures(store), progress=False)
    assert (r2.added, r2.already_submitted) == (0, 6)
    assert n_fireworks(store) == 6
    overlap = [make_doc(i) for i in range(4, 10)]
    fill(store, overlap)
    r3 = sub.submit_structures(store, overlap, progress=False)
    assert (r3.added, r3.already_submitted) == (4, 2)
    assert sorted(r3.added_ids) == [f"drx-{i:012x}" for i in range(6, 10)]
    lp = store.launchpad()
    assert lp.fireworks.count_documents({}) == 10 and lp.workflows.count_documents({}) == 10
    fw = lp.fireworks.find_one({"spec.drx_id": "drx-000000000007"})
    assert fw["state"] == "READY" and fw["spec"]["n_tm"] == 2 and "drx-000000000007" in fw["name"]
    wf = lp.workflows.find_one({"nodes": fw["fw_id"]})
    assert wf["metadata"]["drx_id"] == "drx-000000000007" and "drx-000000000007" in wf["name"]


def test_duplicate_ids_in_one_input_are_added_once(store):
    docs = [make_doc(1), make_doc(1), make_doc(2)]
    r = sub.submit_structures(store, docs, progress=False)
    assert (r.added, r.duplicates) == (2, 1)


def test_failed_batch_is_rolled_back_and_rerun_completes(store, monkeypatch):
    from fireworks import LaunchPad

    docs = [make_doc(i) for i in range(7)]
    original = LaunchPad.bulk_add_wfs
    calls = {"n": 0}

    def flaky(self, wfs):
        calls["n"] += 1
        if calls["n"] == 2:
            # half a batch reaches the database, then the connection drops
            self.workflows.insert_many(w.to_db_dict() for w in wfs)
            self.fireworks.insert_one(wfs[0].fws[0].to_db_dict())
            raise ConnectionError("server went away")
        return original(self, wfs)

    monkeypatch.setattr(LaunchPad, "bulk_add_wfs", flaky)
    with pytest.raises(DrxError) as err:
        sub.submit_structures(store, docs, batch_size=3, progress=False)
    assert "\n" not in str(err.value) and "rerun" in str(err.value)
    lp = store.launchpad()
    assert lp.fireworks.count_documents({}) == 3 and lp.workflows.count_documents({}) == 3
    r = sub.submit_structures(store, docs, batch_size=3, progress=False)
    assert (r.added, r.already_submitted) == (4, 3)
    assert lp.fireworks.count_documents({}) == 7 and lp.workflows.count_documents({}) == 7


def test_slice_selection_tags_and_status(store):
    from drx_workflows.pipeline.relax.status import relax_status

    fill(store, [make_doc(i, slices=("binary",) if i < 3 else ()) for i in range(5)])
    docs = sub.select_structures(store, slice_name="binary")
    assert [d["drx_id"] for d in docs] == [f"drx-{i:012x}" for i in range(3)]
    sub.submit_structures(store, docs, slices=["binary"], progress=False)
    st = relax_status(store)
    assert st["by_slice"] == {"binary": {"READY": 3}}
    assert st["by_n_tm"] == {"2": {"READY": 3}}
    assert st["fizzled_by_error"] == {}
    # slices collection form
    store.slices.insert_one({"name": "pick", "drx_ids": ["drx-000000000004"]})
    assert [d["drx_id"] for d in sub.select_structures(store, slice_name="pick")] == ["drx-000000000004"]
    with pytest.raises(DrxError):
        sub.select_structures(store, slice_name="nothing-here")


def test_isolated_atoms_submitted_once(store):
    r1 = sub.submit_isolated_atoms(store)
    r2 = sub.submit_isolated_atoms(store)
    assert (r1.added, r2.added) == (11, 0)
    lp = store.launchpad()
    assert sorted(lp.fireworks.distinct("spec.drx_id")) == sorted(
        f"atom-{el}" for el in ["Li", "O", "Sc", "Ti", "V", "Cr", "Mn", "Fe", "Co", "Ni", "Cu"]
    )


def test_workflow_file_for_lpad_add(store, tmp_path):
    docs = [make_doc(i) for i in range(3)]
    wfs = sub.build_workflows(docs, inline_structure=True)
    path = sub.write_workflow_file(wfs, tmp_path / "wf.yaml")
    wf = Workflow.from_file(str(path))  # what `lpad add wf.yaml` does
    assert sorted(fw.spec["drx_id"] for fw in wf.fws) == [d["drx_id"] for d in docs]
    # self-contained: the structure travels in the file
    assert all("structure" in fw.tasks[0] for fw in wf.fws)
    lp = store.launchpad()
    lp.add_wf(wf)
    # the file-added workflows count as submitted
    r = sub.submit_structures(store, docs + [make_doc(3)], progress=False)
    assert (r.added, r.already_submitted) == (1, 3)
    one = sub.write_workflow_file(sub.build_workflows([make_doc(5)]), tmp_path / "one.json")
    assert Workflow.from_file(str(one)).fws[0].spec["drx_id"] == "drx-000000000005"
    files = sub.write_workflow_dir(sub.build_workflows(docs[:2]), tmp_path / "wfs")
    assert [Workflow.from_file(str(f)).fws[0].spec["drx_id"] for f in files] == [d["drx_id"] for d in docs[:2]]


# ------------------------------------------------------------------ CLI


def _cli(store_config):
    from drx_workflows.cli.relax import COMMANDS

    @click.group()
    @click.pass_context
    def grp(ctx):
        ctx.obj = {"store_config": store_config}

    for c in COMMANDS:
        grp.add_command(c)
    return grp


def test_cli_submit_status_dry_run_to_file(store, tmp_path, monkeypatch):
    monkeypatch.setenv("PMG_VASP_PSP_DIR", str(tmp_path))  # only checked for being a directory
    fill(store, [make_doc(i) for i in range(4)])
    grp = _cli(store.config)
    runner = CliRunner()
    r = runner.invoke(grp, ["submit", "--dry-run", "dry", "--n-dry", "2"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    written = sorted(p.name for p in (tmp_path / "dry").iterdir())
    assert written == ["drx-000000000000", "drx-000000000001"]
    assert sorted(p.name for p in (tmp_path / "dry" / written[0]).iterdir()) == [
        "INCAR", "KPOINTS", "POSCAR", "POTCAR.spec", "drx_metadata.json"]
    assert n_fireworks(store) == 0
    r = runner.invoke(grp, ["submit", "--to-file", "wf.yaml"], catch_exceptions=False)
    assert r.exit_code == 0 and len(Workflow.from_file("wf.yaml").fws) == 4
    assert n_fireworks(store) == 0
    r = runner.invoke(grp, ["submit", "--quiet", "--limit", "3"], catch_exceptions=False)
    assert r.exit_code == 0 and "3 workflows added" in r.output
    r = runner.invoke(grp, ["submit", "--quiet", "--inline-structures"], catch_exceptions=False)
    assert "1 workflows added" in r.output and "3 already submitted" in r.output
    # by drx_id for the first three; the last carries its structure (for offline compute nodes)
    writes = {fw["spec"]["drx_id"]: fw["spec"]["_tasks"][0] for fw in store.launchpad().fireworks.find({})}
    inline = {i: json.loads(t["structure"]) for i, t in writes.items() if "structure" in t}
    assert list(inline) == ["drx-000000000003"] and len(writes) == 4
    expected = next(d for d in store.structures.find({"drx_id": "drx-000000000003"}))["structure"]
    from drx_workflows.enumeration.records import structure_from_doc

    assert structure_from_doc(inline["drx-000000000003"]) == structure_from_doc(expected)
    r = runner.invoke(grp, ["status"], catch_exceptions=False)
    assert r.exit_code == 0 and "n_tm=2" in r.output and "READY" in r.output
    r = runner.invoke(grp, ["rerun", "--fizzled"], catch_exceptions=False)
    assert "rerun 0 fizzled" in r.output


# ------------------------------------------------------------------ bad input


def _one_line(exc_info):
    msg = str(exc_info.value)
    assert msg and "\n" not in msg
    return msg


def test_not_a_rocksalt_is_refused_and_nothing_submitted(store):
    good = [make_doc(i) for i in range(3)]
    bad = make_doc(9)
    coords = bad["structure"]["frac_coords"]
    coords[0] = [c + 0.07 for c in coords[0]]
    with pytest.raises(DrxError) as err:
        sub.submit_structures(store, good + [bad], progress=False)
    assert bad["drx_id"] in _one_line(err) and "rocksalt" in str(err.value)
    assert n_fireworks(store) == 0
    missing_o = make_doc(10)
    missing_o["structure"]["species"] = ["Li"] * len(missing_o["structure"]["species"])
    with pytest.raises(DrxError) as err:
        relax_workflow(missing_o)
    _one_line(err)


def test_skewed_supercell_is_still_rocksalt():
    s = _base()
    s.replace(0, "Mn")
    s.make_supercell([[1, 1, 0], [0, 1, 0], [0, 0, 1]])
    check_drx_structure(s, "skewed")
    check_drx_structure(structure_to_compact(s), "skewed")


def test_element_without_u_mapping(store):
    doc = make_doc(1)
    doc["structure"]["species"][0] = "Zn"
    with pytest.raises(DrxError) as err:
        relax_workflow(doc)
    assert "Zn" in _one_line(err)


def test_missing_psp_dir_outside_dry_run(store, monkeypatch, tmp_path):
    from pymatgen.core import SETTINGS

    monkeypatch.delenv("PMG_VASP_PSP_DIR", raising=False)
    monkeypatch.delitem(SETTINGS, "PMG_VASP_PSP_DIR", raising=False)
    fill(store, [make_doc(0)])
    runner = CliRunner()
    r = runner.invoke(_cli(store.config), ["submit", "--quiet"])
    assert isinstance(r.exception, DrxError) and "PMG_VASP_PSP_DIR" in str(r.exception)
    assert "\n" not in str(r.exception)
    assert n_fireworks(store) == 0
    # a worker that writes POTCAR.spec needs no POTCARs; neither does a dry run
    fw = tmp_path / "fake_worker.yaml"
    fw.write_text("name: fake\nenv:\n  vasp_cmd: fake\n  potcar_spec: true\n")
    r = runner.invoke(_cli(store.config), ["submit", "--quiet", "--fworker", str(fw)], catch_exceptions=False)
    assert "1 workflows added" in r.output
    r = runner.invoke(_cli(store.config), ["submit", "--dry-run", "d"], catch_exceptions=False)
    assert r.exit_code == 0


def test_launchpad_and_fworker_files_that_do_not_parse(tmp_path):
    from drx_workflows.pipeline.launch.local import load_fworker
    from drx_workflows.store.config import StoreConfig
    from drx_workflows.store.dbfile import load_db_file

    lp = tmp_path / "my_launchpad.yaml"
    lp.write_text("host: [unclosed\nport: 27017\n")
    with pytest.raises(DrxError) as err:
        StoreConfig.from_launchpad_file(lp)
    _one_line(err)
    fw = tmp_path / "my_fworker.yaml"
    fw.write_text("name: x\nenv: {vasp_cmd: [\n")
    with pytest.raises(DrxError) as err:
        load_fworker(fw)
    _one_line(err)
    db = tmp_path / "db.json"
    db.write_text("{not json: [")
    with pytest.raises(DrxError) as err:
        load_db_file(db)
    _one_line(err)


def test_db_file_formats(tmp_path):
    from drx_workflows.store.config import StoreConfig
    from drx_workflows.store.dbfile import load_db_file, write_db_file

    (tmp_path / "db.json").write_text('{"mongomock_file": "store/s.json", "database": "drx"}')
    cfg = load_db_file(tmp_path / "db.json")
    assert cfg.kind == "embedded" and cfg.path == tmp_path / "store" / "s.json"
    (tmp_path / "db2.json").write_text('{"host": "db.example", "port": 27017, "database": "x", "admin_user": "u", "admin_password": "p"}')
    cfg = load_db_file(tmp_path / "db2.json")
    assert (cfg.kind, cfg.host, cfg.port, cfg.name, cfg.username, cfg.password) == ("mongodb", "db.example", 27017, "x", "u", "p")
    back = load_db_file(write_db_file(tmp_path / "w.json", StoreConfig.embedded(tmp_path / "e.json")))
    assert back.kind == "embedded" and back.path == tmp_path / "e.json"
    (tmp_path / "db3.json").write_text('{"port": 1}')
    with pytest.raises(DrxError):
        load_db_file(tmp_path / "db3.json")


def test_drx_cli_bad_input_is_one_line_exit_2(tmp_path):
    """Through the real `drx` entry point, in a subprocess (one embedded store per process)."""
    from conftest import run_drx

    bad = tmp_path / "bad_launchpad.yaml"
    bad.write_text("host: [unclosed\n")
    r = run_drx("--launchpad", bad, "status", cwd=tmp_path)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "does not parse" in r.stderr
    r = run_drx("--store", tmp_path / "s" / "store.json", "submit", "--quiet", cwd=tmp_path, env={"PMG_VASP_PSP_DIR": ""})
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "PMG_VASP_PSP_DIR" in r.stderr
    r = run_drx("--store", tmp_path / "s" / "store.json", "launch", "--fworker", tmp_path / "none.yaml", cwd=tmp_path)
    assert r.returncode == 2 and "fworker file" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_launch_refuses_a_db_file_naming_another_store(store, tmp_path):
    from drx_workflows.pipeline.launch.local import launch
    from drx_workflows.store.config import StoreConfig
    from drx_workflows.store.dbfile import write_db_file

    other = write_db_file(tmp_path / "other_db.json", StoreConfig.embedded(tmp_path / "elsewhere.json"))
    fw = tmp_path / "fw.yaml"
    fw.write_text(f"name: w\nenv:\n  vasp_cmd: fake\n  potcar_spec: true\n  db_file: {other}\n")
    with pytest.raises(DrxError) as err:
        launch(store, fw, launch_dir=tmp_path / "runs")
    assert "names embedded store" in _one_line(err)
    fw.write_text("name: w\nenv:\n  potcar_spec: true\n")
    with pytest.raises(DrxError) as err:
        launch(store, fw, launch_dir=tmp_path / "runs")
    assert "vasp_cmd" in _one_line(err)


def test_real_lpad_add_of_the_workflow_file(tmp_path):
    """`lpad add wf.yaml` (FireWorks' own CLI, on an embedded store file via FireWorks'
    MONGOMOCK_SERVERSTORE_FILE), then a submit of an overlapping set adds only the rest."""
    import os
    import subprocess
    import sys
    from datetime import datetime
    from pathlib import Path

    sub.write_workflow_file(sub.build_workflows([make_doc(i) for i in range(3)], inline_structure=True), tmp_path / "wf.yaml")
    store_file = tmp_path / "store.json"
    store_file.write_text("{}")
    (tmp_path / "lp.yaml").write_text("host: localhost\nname: drx\n")
    env = dict(os.environ, MONGOMOCK_SERVERSTORE_FILE=str(store_file))
    lpad = str(Path(sys.executable).with_name("lpad"))
    for args in (["reset", "--password", datetime.now().strftime("%Y-%m-%d")], ["add", "wf.yaml"]):
        r = subprocess.run([lpad, "-l", "lp.yaml", *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
    check = (
        "import sys; sys.path.insert(0, %r)\n"
        "from test_submit import make_doc\n"
        "from drx_workflows.store.client import open_store\nfrom drx_workflows.store.config import StoreConfig\n"
        "from drx_workflows.pipeline.relax import submit as sub\n"
        "st = open_store(StoreConfig.embedded(%r))\n"
        "r = sub.submit_structures(st, [make_doc(i) for i in range(5)], progress=False)\n"
        "print(r.added, r.already_submitted)\n"
    ) % (str(Path(__file__).parent), str(store_file))
    r = subprocess.run([sys.executable, "-c", check], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[-2:] == ["2", "3"]


def test_enumerated_dataset_with_top_of_charge_structures_submits(fresh_store):
    """LiTMO2 and Li-free TMO2 (half the cation sites vacant) both pass the rocksalt check."""
    from drx_workflows.enumeration.sampling import EnumerationSettings, enumerate_drx
    from drx_workflows.store.structures import save_records

    records = enumerate_drx(EnumerationSettings(tms=("Mn", "Ni"), n_tm=(1, 2), per_ntm=4, toc_per_ntm=2)).records
    save_records(fresh_store, records)
    docs = list(fresh_store.structures.find({}, {"_id": 0}))
    assert any(d["li_free"] for d in docs)
    result = sub.submit_structures(fresh_store, docs, progress=False)
    assert result.added == len(records)
    assert sub.submit_structures(fresh_store, docs, progress=False).added == 0
