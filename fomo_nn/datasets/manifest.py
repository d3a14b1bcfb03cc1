"""The pretraining manifest: every image of a corpus with subject, session and sequence.

It points at the scans where they already are (60K or 306K scans are never copied). Paths are stored
relative to `source_root` so a corpus can move with one edit (an image extracted elsewhere, e.g. a
FOMO300K session unzipped with `--unzip-to`, keeps an absolute path).

Besides identity, an image may carry what its corpus records about it (FOMO300K's `participants.tsv`
and `mri_info.tsv`): the source dataset it came from, the BIDS modality folder, vendor, field strength,
and the subject's age and sex at that session. They are optional (None when unknown, left out of the
file), so FOMO60K manifests stay as they were; sampling can balance sources with them and probes can
group by site. Unknown keys in a manifest are refused: a typo never silently drops a field.
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, fields
from pathlib import Path

from fomo_nn.datasets.cases import Case
from fomo_nn.utils.errors import BadInputError
from fomo_nn.utils.files import write_json_atomic
from fomo_nn.utils.strict_keys import UnknownKeyError, check_known_keys

MANIFEST_NAME = "manifest.json"


@dataclass
class ManifestImage:
    image_id: str
    subject: str  # unique in the manifest (FOMO300K: qualified by its source, e.g. PT030_ds000117_sub-01)
    session: str
    sequence: str
    path: str  # relative to the manifest's source_root (or absolute)
    source: str | None = None  # source dataset, e.g. "PT021_IXI" or "PT030_OpenNeuro/ds000117"
    modality: str | None = None  # BIDS folder the scan sits in: anat, dwi, perf, undefined
    vendor: str | None = None  # "Siemens", "GE", "Philips", ... as normalized by the converter
    field_strength: float | None = None  # tesla
    age: float | None = None  # years, at this session
    sex: str | None = None  # "M" or "F"


METADATA_FIELDS = ("source", "modality", "vendor", "field_strength", "age", "sex")
_FIELD_NAMES = tuple(f.name for f in fields(ManifestImage))


@dataclass
class Manifest:
    source_root: str
    images: list[ManifestImage]
    sources: list[str]  # names of the corpora it was built from (provenance for Method vs Open track)

    def absolute_path(self, image: ManifestImage) -> str:
        path = Path(image.path)
        return str(path if path.is_absolute() else Path(self.source_root) / path)

    def cases(self) -> list[Case]:
        """One case per image; the known metadata rides along in `Case.extra` (absent keys: unknown)."""
        cases = []
        for im in self.images:
            extra = {name: getattr(im, name) for name in METADATA_FIELDS if getattr(im, name) is not None}
            cases.append(Case(case_id=im.image_id, image_files=[self.absolute_path(im)], subject=im.subject,
                              session=im.session, sequence=im.sequence, extra=extra))
        return cases

    @property
    def num_subjects(self) -> int:
        return len({im.subject for im in self.images})

    @property
    def num_sessions(self) -> int:
        return len({(im.subject, im.session) for im in self.images})

    def images_per_source(self) -> dict[str, int]:
        """Images per source dataset (images without one count under "unknown"), largest first."""
        return dict(Counter(im.source or "unknown" for im in self.images).most_common())

    def to_json(self) -> dict:
        data = {"source_root": self.source_root, "sources": self.sources, "num_images": len(self.images),
                "num_subjects": self.num_subjects, "num_sessions": self.num_sessions}
        if any(im.source for im in self.images):
            data["images_per_source"] = self.images_per_source()
        data["images"] = [_image_json(im) for im in self.images]
        return data


def _image_json(image: ManifestImage) -> dict:
    """Identity always; metadata only where known (a 306K manifest does not carry 1.8M nulls)."""
    return {name: value for name in _FIELD_NAMES
            if (value := getattr(image, name)) is not None or name not in METADATA_FIELDS}


def save_manifest(manifest: Manifest, dataset_dir: str | Path) -> Path:
    return write_json_atomic(Path(dataset_dir) / MANIFEST_NAME, manifest.to_json(), indent=None)


def load_manifest(dataset_dir: str | Path) -> Manifest:
    path = Path(dataset_dir) / MANIFEST_NAME
    if not path.is_file():
        raise BadInputError(path, "the pretraining manifest is missing (run fomo_nn_convert fomo60k or fomo300k)")
    try:
        data = json.loads(path.read_text())
        entries = data["images"]
        keys = set().union(*(entry.keys() for entry in entries)) if entries else set()
        check_known_keys(f"{path} images", sorted(keys), _FIELD_NAMES)
        images = [ManifestImage(**entry) for entry in entries]
    except UnknownKeyError as error:
        raise BadInputError(path, f"malformed manifest ({error})") from None
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as error:
        raise BadInputError(path, f"malformed manifest ({error})") from None
    return Manifest(source_root=data["source_root"], images=images, sources=data.get("sources", []))
