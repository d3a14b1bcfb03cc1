"""Where the pretraining data came from, for the adaptation record of every checkpoint.

FOMO25 has a Method track (pretraining on FOMO60K only) and an Open track (any data); a user
finetuning a checkpoint must be able to tell which one it qualifies for. The counts are of the
scans the trainer actually used; the manifest (if found) adds the corpora it was built from.
"""
from __future__ import annotations

import json
from pathlib import Path

from fomo_nn import paths
from fomo_nn.datasets.manifest import MANIFEST_NAME
from fomo_nn.preprocessing.case_store import PreprocessedCase

METHOD_TRACK_CORPUS = "FOMO60K"
TRACK_RULE = f"method: every source corpus is {METHOD_TRACK_CORPUS}; open: any other source; unknown: no manifest"


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def find_manifest(preprocessed_dir: Path) -> Path | None:
    """manifest.json next to the preprocessed data, else in the raw dataset of the same name."""
    candidates = [preprocessed_dir / MANIFEST_NAME, paths.raw_root() / preprocessed_dir.name / MANIFEST_NAME]
    return next((p for p in candidates if p.is_file()), None)


def manifest_summary(path: Path | None) -> dict | None:
    data = _read_json(path) if path is not None else None
    if data is None:
        return None
    images = data.get("images", [])
    return {"path": str(path), "sources": [str(s) for s in data.get("sources", [])],
            "num_images": int(data.get("num_images", len(images))),
            "num_subjects": int(data.get("num_subjects", len({im.get("subject") for im in images}))),
            "num_sessions": int(data.get("num_sessions", len({(im.get("subject"), im.get("session"))
                                                              for im in images})))}


def track_of(sources: list[str]) -> str:
    if not sources:
        return "unknown"
    return "method" if all(s.upper() == METHOD_TRACK_CORPUS for s in sources) else "open"


def data_provenance(preprocessed_dir: str | Path, cases: list[PreprocessedCase]) -> dict:
    """JSON-able summary: dataset names, corpora, scans/subjects/sessions used, FOMO25 track."""
    preprocessed_dir = Path(preprocessed_dir)
    spec = _read_json(preprocessed_dir / "dataset.json") or {}
    manifest = manifest_summary(find_manifest(preprocessed_dir))
    sources = manifest["sources"] if manifest else []
    return {
        "datasets": [preprocessed_dir.name],
        "dataset_names": [str(spec["name"])] if "name" in spec else [],
        "sources": sources,
        "num_scans": len(cases),
        "num_subjects": len({c.subject for c in cases}),
        "num_sessions": len({(c.subject, c.session) for c in cases}),
        "manifest": manifest,
        "track": track_of(sources),
        "track_rule": TRACK_RULE,
    }
