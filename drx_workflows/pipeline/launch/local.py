"""Run relaxation fireworks in this process (the way to use the embedded store)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from drx_workflows.errors import DrxError

DEFAULT_FWORKER = Path("fw_configs") / "my_fworker.yaml"


def load_fworker(path=None):
    """An FWorker from a YAML file; one-line DrxError when it is missing or does not parse."""
    from fireworks import FWorker
    from ruamel.yaml import YAML, YAMLError

    p = Path(path) if path else DEFAULT_FWORKER
    if not p.exists():
        raise DrxError(f"fworker file {p} not found (copy fw_configs/my_fworker.yaml and edit it)")

    try:
        doc = YAML(typ="safe").load(p.read_text(encoding="utf-8"))
    except (YAMLError, OSError, UnicodeDecodeError) as exc:
        raise DrxError(f"fworker file {p} does not parse ({type(exc).__name__})") from None
    if not isinstance(doc, dict):
        raise DrxError(f"fworker file {p} must be a mapping with name/category/query/env")
    env = doc.get("env") or {}
    if not isinstance(env, dict):
        raise DrxError(f"fworker file {p}: 'env' must be a mapping")
    query = doc.get("query") or "{}"
    try:
        fworker = FWorker(
            name=doc.get("name") or "drx worker",
            category=doc.get("category") if doc.get("category") is not None else "",
            query=json.loads(query) if isinstance(query, str) else query,
            env=env,
        )
    except (ValueError, TypeError) as exc:
        raise DrxError(f"fworker file {p}: bad 'query' or 'category' ({type(exc).__name__})") from None
    return fworker, p


def fworker_is_fake(fworker) -> bool:
    """True when the fworker writes POTCAR.spec (dry runs, fake VASP), so no POTCARs are needed."""
    return bool(fworker.env.get("potcar_spec"))


def prepare_fworker(store, fworker, fworker_path: Path, launch_dir: Path):
    """Check the env the fireworks need and make its db_file name THIS store.

    Without a db_file a db.json for the store is written into the launch directory; a
    db_file naming a different store is refused, since its task documents would be lost
    or land elsewhere.
    """
    from drx_workflows.store.dbfile import load_db_file, write_db_file
    from drx_workflows.vasp.sets import check_psp_dir

    env = dict(fworker.env)
    if not env.get("vasp_cmd"):
        raise DrxError(f"fworker file {fworker_path}: env.vasp_cmd is missing (the command that runs VASP)")
    if env.get("db_file"):
        db_path = Path(os.path.expandvars(str(env["db_file"]))).expanduser()
        if not db_path.is_absolute():
            db_path = (fworker_path.parent / db_path).absolute()
        cfg = load_db_file(db_path)
        if cfg != store.config:
            raise DrxError(
                f"fworker db_file {db_path} names {cfg.describe()}, but this launch uses {store.config.describe()}"
            )
        env["db_file"] = str(db_path)
    else:
        env["db_file"] = str(write_db_file(launch_dir / "db.json", store.config))
    if not fworker_is_fake(fworker):
        check_psp_dir()
    fworker.env = env
    return fworker


def launch(store, fworker_path=None, nlaunches: int = 0, launch_dir=None, sleep_time: int | None = None,
           timeout: int | None = None, strm_lvl: str = "INFO") -> int:
    """``rapidfire`` on the store's LaunchPad in this process; returns the number of launches made."""
    from fireworks.core.rocket_launcher import rapidfire

    fworker, fpath = load_fworker(fworker_path)
    launch_dir = Path(launch_dir or os.getcwd()).absolute()
    launch_dir.mkdir(parents=True, exist_ok=True)
    fworker = prepare_fworker(store, fworker, fpath, launch_dir)
    from drx_workflows.pipeline.launch.recovery import durable_launches

    lp = store.launchpad()
    before = lp.launches.count_documents({})
    try:
        # embedded store: saved at each checkout and after each rocket, so a killed
        # launcher loses at most the firework it was running (see vasp/recovery.py)
        with durable_launches(store, lp):
            rapidfire(
                lp, fworker, m_dir=str(launch_dir), nlaunches=nlaunches, sleep_time=sleep_time, timeout=timeout,
                strm_lvl=strm_lvl,
            )
    finally:
        store.save()
    return lp.launches.count_documents({}) - before
