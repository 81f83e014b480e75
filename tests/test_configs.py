"""Bad FireWorks config files give a one-line error naming the file and the field (exit 2)."""

import shutil
from pathlib import Path

import pytest
from conftest import REPO, run_drx

from drx_workflows.errors import DrxError
from drx_workflows.pipeline.launch.configs import (
    check_walltime,
    load_fworker,
    load_launchpad,
    load_qadapter,
)

SLURM = REPO / "fw_configs" / "my_qadapter_slurm.yaml"
PBS = REPO / "fw_configs" / "my_qadapter_pbs.yaml"


def _edit(src: Path, dst: Path, old: str, new: str) -> Path:
    text = src.read_text()
    assert old in text, old
    dst.write_text(text.replace(old, new))
    return dst


def test_project_templates_are_valid():
    for path in sorted((REPO / "fw_configs").glob("my_qadapter*.yaml")):
        assert load_qadapter(path).q_type in ("SLURM", "PBS")
    assert load_fworker(REPO / "fw_configs" / "my_fworker.yaml")[0].env["vasp_cmd"]
    assert load_launchpad(REPO / "fw_configs" / "my_launchpad.yaml").kind == "mongodb"
    assert load_launchpad(REPO / "fw_configs" / "my_launchpad_embedded.yaml").kind == "embedded"


@pytest.mark.parametrize(
    "old, new, field",
    [
        ("_fw_q_type: SLURM", "_fw_q_type: SLRUM", "_fw_q_type"),
        ("_fw_q_type: SLURM\n", "", "_fw_q_type"),
        ("walltime: '48:00:00'", "walltime: 48h", "walltime"),
        ("walltime: '48:00:00'", "walltime: '48:00'", "walltime"),
        ("walltime: '48:00:00'", "walltime: 172800", "walltime"),
        ("walltime: '48:00:00'", "wallltime: '48:00:00'", "wallltime"),
        ("nodes: 1", "nodes: one", "nodes"),
        ("_fw_name: CommonAdapter\n", "", "_fw_name"),
    ],
)
def test_bad_qadapter_names_file_and_field(tmp_path, old, new, field):
    bad = _edit(SLURM, tmp_path / "my_qadapter.yaml", old, new)
    with pytest.raises(DrxError) as err:
        load_qadapter(bad)
    msg = str(err.value)
    assert str(bad) in msg and f"'{field}'" in msg and "\n" not in msg


def test_missing_rocket_launch(tmp_path):
    text = "".join(ln for ln in SLURM.read_text().splitlines(True) if not ln.startswith("rocket_launch"))
    (tmp_path / "q.yaml").write_text(text)
    with pytest.raises(DrxError, match="'rocket_launch' is missing"):
        load_qadapter(tmp_path / "q.yaml")


def test_walltime_formats():
    assert check_walltime("1-12:00:00", "SLURM", "f") == "1-12:00:00"
    assert check_walltime("120:00:00", "PBS", "f") == "120:00:00"
    for bad, q in [("1-12:00:00", "PBS"), ("12:61:00", "SLURM"), ("2 days", "SLURM"), ("", "PBS")]:
        with pytest.raises(DrxError, match="walltime"):
            check_walltime(bad, q, "f")


def test_pbs_template_renders_its_fields(tmp_path):
    """The PBS path cannot run here: its job script is checked against the YAML's values."""
    from ruamel.yaml import YAML

    fields = YAML(typ="safe").load(PBS.read_text())
    script = load_qadapter(PBS).get_script_str(str(tmp_path))
    lines = script.splitlines()
    assert lines[0].startswith("#!")
    assert f"#PBS -l nodes={fields['nnodes']}:ppn={fields['ppnode']}" in lines
    assert f"#PBS -l walltime={fields['walltime']}" in lines
    assert f"#PBS -q {fields['queue']}" in lines
    assert f"#PBS -A {fields['account']}" in lines
    assert f"#PBS -N {fields['job_name']}" in lines
    assert f"cd {tmp_path}" in lines
    assert fields["rocket_launch"].strip() in lines
    assert lines.index(f"cd {tmp_path}") < lines.index(fields["rocket_launch"].strip())
    assert not any("$${" in ln for ln in lines)  # every placeholder filled or dropped


def test_bad_fworker_and_launchpad_files(tmp_path):
    with pytest.raises(DrxError, match=r"fworker file .*nope.yaml not found"):
        load_fworker(tmp_path / "nope.yaml")
    (tmp_path / "w.yaml").write_text("name: x\nenv: [unclosed\n")
    with pytest.raises(DrxError, match=r"fworker file .*w.yaml does not parse"):
        load_fworker(tmp_path / "w.yaml")
    (tmp_path / "w2.yaml").write_text("name: x\nenv:\n  db_file: db.json\n")
    with pytest.raises(DrxError, match=r"fworker file .*w2.yaml: field 'env.vasp_cmd' is missing"):
        load_fworker(tmp_path / "w2.yaml")
    with pytest.raises(DrxError, match=r"launchpad file .*lp.yaml not found"):
        load_launchpad(tmp_path / "lp.yaml")
    (tmp_path / "lp2.yaml").write_text("host: db.example.org\nport: '27017x'\n")
    with pytest.raises(DrxError, match=r"launchpad file .*lp2.yaml: field 'port'"):
        load_launchpad(tmp_path / "lp2.yaml")
    (tmp_path / "lp3.yaml").write_text("port: 27017\nname: drx\n")
    with pytest.raises(DrxError, match=r"launchpad file .*lp3.yaml: field 'host' is missing"):
        load_launchpad(tmp_path / "lp3.yaml")


def test_cli_reports_bad_files_in_one_line(tmp_path):
    bad_q = _edit(SLURM, tmp_path / "my_qadapter.yaml", "_fw_q_type: SLURM", "_fw_q_type: CONDOR")
    shutil.copy(REPO / "fw_configs" / "my_fworker.yaml", tmp_path / "my_fworker.yaml")
    r = run_drx("check-config", "-q", bad_q, cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("drx: error: qadapter file") and "'_fw_q_type'" in r.stderr
    # qlaunch checks before it submits anything
    r = run_drx("--store", tmp_path / "s" / "store.json", "qlaunch", "-q", bad_q, "-w", tmp_path / "my_fworker.yaml",
                "--launch-dir", tmp_path / "jobs", "singleshot", cwd=tmp_path)
    assert r.returncode == 2 and "CONDOR" in r.stderr and r.stderr.count("\n") == 1
    assert not (tmp_path / "jobs").exists() or not any((tmp_path / "jobs").iterdir())
    # FireWorks' own rlaunch in the job script would clobber the embedded store: refused
    r = run_drx("--store", tmp_path / "s" / "store.json", "qlaunch", "-q", SLURM, "-w", tmp_path / "my_fworker.yaml",
                "--launch-dir", tmp_path / "jobs", "singleshot", cwd=tmp_path)
    assert r.returncode == 2 and "'rocket_launch'" in r.stderr and "drx rlaunch" in r.stderr
    r = run_drx("check-config", "-q", SLURM, "-q", PBS, "-w", tmp_path / "my_fworker.yaml", cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.count(": ok") == 3
