"""Trained potentials in the store: the model folder in GridFS (tar.gz) and a potentials document with its metrics."""

from __future__ import annotations

import io
import os
import tarfile
import tempfile
import time
from pathlib import Path

from drx_workflows.mliap.base import Potential, backend_class
from drx_workflows.mliap.training import TrainingResult

MODEL_FILES = "potential_files"  # GridFS bucket of the potentials collection


def store_result(store, result: TrainingResult, extra: dict | None = None) -> dict:
    """Model folder into GridFS (tar.gz) and a ``potentials`` document with the metrics."""
    import gridfs

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = result.potential.save(Path(tmp) / "model")
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            tar.add(model_dir, arcname="model")
    fs = gridfs.GridFS(store.db, MODEL_FILES)
    file_id = fs.put(buf.getvalue(), filename=f"{result.backend}-{result.slice}.tar.gz")
    doc = {**result.to_doc(), "model_file_id": file_id, "created": time.strftime("%Y-%m-%dT%H:%M:%S"), **(extra or {})}
    store.potentials.insert_one(doc)
    store.save()
    return doc


def load_potential(store, doc: dict, directory: str | os.PathLike) -> Potential:
    """Unpack a stored model into ``directory`` and load it with its backend."""
    import gridfs

    data = gridfs.GridFS(store.db, MODEL_FILES).get(doc["model_file_id"]).read()
    directory = Path(directory)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        tar.extractall(directory, filter="data")
    return backend_class(doc["backend"]).load(directory / "model")
