"""The main job end to end on a tiny dataset: enumerate -> submit -> surrogate relaxations under
custodian -> task documents -> ANN training -> report; a rerun recomputes nothing."""

import json
import re
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from drx_workflows.demo import DemoSettings, run_demo
    from drx_workflows.enumeration.sampling import EnumerationSettings
    tiny = (EnumerationSettings(tms=("Mn", "Ni"), n_tm=(2,), per_ntm=3, toc_per_ntm=1, max_cation_sites=4, seed=0),)
    summary = run_demo(DemoSettings(root=Path(sys.argv[1]), datasets=tiny, extra_incar={"EDIFFG": -0.1},
                                    ann={"hidden_layers": [5], "epochs": 30, "radial_order": 4, "angular_order": 2}))
    print("SUMMARY " + json.dumps(summary))
    """
)


def _run(root):
    r = subprocess.run([sys.executable, "-c", SCRIPT, str(root)], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("SUMMARY ")][-1]
    return r.stdout, json.loads(line[len("SUMMARY "):])


@pytest.mark.slow
def test_demo_end_to_end_and_rerun_reuses_everything(tmp_path):
    root = tmp_path / "demo"
    out, summary = _run(root)
    assert summary["structures"] == 4 and summary["tasks"] == 4 and summary["complete"]
    assert "slice 'demo' complete: 4 task documents" in out
    assert "training firework 'train ann on demo generation 1' started by itself: COMPLETED" in out

    store = json.loads((root / "store.json").read_text())["drx"]
    tasks = [doc for _, doc in store["tasks"]["documents"]]
    assert len(tasks) == 9  # four structures, the bcc Li relaxation and its four single points
    assert all(t["surrogate"] is True and t["state"] == "successful" for t in tasks)
    assert all(t["output"]["bandgap"] is None for t in tasks)  # the surrogate's placeholder band data is dropped
    structures = {doc["drx_id"] for _, doc in store["structures"]["documents"]}
    refs = {"ref-Li-bcc", "ref-Li-bcc-v0.85", "ref-Li-bcc-v0.92", "ref-Li-bcc-v1.08", "ref-Li-bcc-v1.15"}
    assert {t["drx_id"] for t in tasks} == structures | refs
    assert "with 5 bcc Li voltage reference calculations" in out
    assert "average Li-intercalation voltages (surrogate engine, NOT DFT)" in out
    # the engine's voltage of LiMn0.5Ni0.5O2 and the demo ANN's (its own relaxations, its own bcc Li)
    assert re.search(r"LiMn0\.5Ni0\.5O2: -?\d+\.\d{3} V \(surrogate", out), out
    assert re.search(r"LiMn0\.5Ni0\.5O2 -?\d+\.\d{3} V \(surrogate engine -?\d+\.\d{3} V; potential trained", out), out
    potentials = [doc for _, doc in store["potentials"]["documents"]]
    assert len(potentials) == 1 and potentials[0]["backend"] == "ann" and potentials[0]["surrogate"] is True
    assert potentials[0]["generation"] == 1 and potentials[0]["trained_by"] == "firework"
    assert sorted(potentials[0]["reference_structures"]) == sorted(refs)  # the ANN saw Li metal
    report = (root / "report" / "report.md").read_text()
    assert "surrogate" in report and "| ann | demo | total |" in report
    assert (root / "report" / "per_ntm_mae.png").stat().st_size > 5000

    out2, summary2 = _run(root)
    assert "(0 new)" in out2 and "0 added, 4 already submitted" in out2 and "0 launches this run" in out2
    assert "training firework already there" in out2
    store2 = json.loads((root / "store.json").read_text())["drx"]
    assert len(store2["tasks"]["documents"]) == 9 and len(store2["potentials"]["documents"]) == 1


def test_fresh_starts_over(tmp_path):
    root = tmp_path / "demo"
    root.mkdir()
    (root / "old-result.txt").write_text("from an earlier run")
    code = (
        "import sys; from pathlib import Path; from drx_workflows.demo import DemoSettings, run_demo; "
        "print(run_demo(DemoSettings(root=Path(sys.argv[1]), fresh=True, datasets=(), train=False)))"
    )
    r = subprocess.run([sys.executable, "-c", code, str(root)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert not (root / "old-result.txt").exists()
    assert (root / "store.json").exists()
