"""The pretraining manifest: every image of a corpus with subject, session and sequence.

It points at the scans where they already are (60K scans are never copied). Paths are stored
relative to `source_root` so a corpus can move with one edit.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from fomo_nn.datasets.cases import Case
from fomo_nn.io.errors import BadInputError
from fomo_nn.utils.files import write_json_atomic

MANIFEST_NAME = "manifest.json"


@dataclass
class ManifestImage:
    image_id: str
    subject: str
    session: str
    sequence: str
    path: str  # relative to the manifest's source_root (or absolute)


@dataclass
class Manifest:
    source_root: str
    images: list[ManifestImage]
    sources: list[str]  # names of the corpora it was built from (provenance for Method vs Open track)

    def absolute_path(self, image: ManifestImage) -> str:
        path = Path(image.path)
        return str(path if path.is_absolute() else Path(self.source_root) / path)

    def cases(self) -> list[Case]:
        return [Case(case_id=im.image_id, image_files=[self.absolute_path(im)], subject=im.subject,
                     session=im.session, sequence=im.sequence) for im in self.images]

    @property
    def num_subjects(self) -> int:
        return len({im.subject for im in self.images})

    @property
    def num_sessions(self) -> int:
        return len({(im.subject, im.session) for im in self.images})

    def to_json(self) -> dict:
        return {"source_root": self.source_root, "sources": self.sources, "num_images": len(self.images),
                "num_subjects": self.num_subjects, "num_sessions": self.num_sessions,
                "images": [asdict(im) for im in self.images]}


def save_manifest(manifest: Manifest, dataset_dir: str | Path) -> Path:
    return write_json_atomic(Path(dataset_dir) / MANIFEST_NAME, manifest.to_json(), indent=None)


def load_manifest(dataset_dir: str | Path) -> Manifest:
    path = Path(dataset_dir) / MANIFEST_NAME
    if not path.is_file():
        raise BadInputError(path, "the pretraining manifest is missing (run fomo_nn_convert fomo60k)")
    try:
        data = json.loads(path.read_text())
        images = [ManifestImage(**entry) for entry in data["images"]]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise BadInputError(path, f"malformed manifest ({error})") from None
    return Manifest(source_root=data["source_root"], images=images, sources=data.get("sources", []))
