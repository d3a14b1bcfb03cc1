"""fomo_nn_convert on small FOMO-layout trees built here: what goes in, what comes out, what is refused."""
from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from dataset_conversion.fomo60k import convert_fomo60k
from dataset_conversion.fomo_task import convert_fomo_task
from dataset_conversion.layout import sequence_family
from fomo_nn.cli.convert import main
from fomo_nn.datasets.cases import list_cases
from fomo_nn.datasets.dataset_json import load_dataset_json
from fomo_nn.datasets.manifest import load_manifest
from fomo_nn.datasets.validation import read_grid, validate_raw_dataset
from fomo_nn.io.errors import BadInputError

SHAPE = (16, 18, 16)
AFFINE = np.array([[-1.0, 0, 0, 10], [0, 1.2, 0, -20], [0, 0, 1.0, 5], [0, 0, 0, 1]])


@pytest.fixture()
def roots(tmp_path, monkeypatch):
    for var in ("fomo_nn_raw", "fomo_nn_preprocessed", "fomo_nn_results"):
        monkeypatch.setenv(var, str(tmp_path / var))
    return tmp_path


def write_nifti(path: Path, data=None, affine=AFFINE, seed=0, shape=SHAPE, dtype=np.float32) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if data is None:
        data = np.random.default_rng(seed).normal(100, 20, size=shape)
    nib.save(nib.Nifti1Image(np.asarray(data).astype(dtype), affine), str(path))
    return path


def truncate(path: Path, keep: float = 0.6) -> Path:
    payload = path.read_bytes()
    path.write_bytes(payload[: int(len(payload) * keep)])
    return path


def raw(roots, folder: str) -> Path:
    return roots / "fomo_nn_raw" / folder


# ---------------------------------------------------------------------------------------------- FOMO60K
FOMO60K_FILES = {
    "sub_1/ses_1": ["t1", "t1_2", "flair"],
    "sub_1/ses_2": ["t2"],
    "sub_2/ses_1": ["scan_3", "dwi_b1000"],
    "sub_10/ses_1": ["T1"],
}


def fomo60k_tree(root: Path) -> Path:
    for n, (session, sequences) in enumerate(FOMO60K_FILES.items()):
        for k, sequence in enumerate(sequences):
            write_nifti(root / session / f"{sequence}.nii.gz", seed=10 * n + k, shape=(6, 7, 5))
    (root / "sub_1" / "ses_1" / "t1.json").write_text("{}")  # a sidecar: ignored, not an image
    return root


def test_fomo60k_manifest_lists_every_image_in_place(roots):
    src = fomo60k_tree(roots / "corpus")
    report = convert_fomo60k(src, 1, progress=False)
    target = raw(roots, "Dataset001_FOMO60K")
    assert report.converted == 7 and report.bad == [] and report.exit_code(False) == 0
    assert sorted(p.name for p in target.iterdir()) == ["dataset.json", "manifest.json"]  # no copy of any scan

    spec = load_dataset_json(target)
    assert spec.task_type == "pretraining" and spec.channel_names == {"0": "mri"} and spec.num_training == 7
    manifest = load_manifest(target)
    assert manifest.source_root == str(src.resolve())
    listed = {(im.subject, im.session, im.sequence, im.path) for im in manifest.images}
    expected = {(s.split("/")[0], s.split("/")[1], q, f"{s}/{q}.nii.gz") for s, qs in FOMO60K_FILES.items() for q in qs}
    assert listed == expected
    assert [im.subject for im in manifest.images][-1] == "sub_10"  # natural order: sub_2 before sub_10
    assert len({im.image_id for im in manifest.images}) == 7
    families = json.loads((target / "manifest.json").read_text())["sequence_families"]
    assert families["t1_2"] == "t1" and families["scan_3"] == "unknown" and families["T1"] == "t1"
    cases, _ = list_cases(target)
    assert all(Path(c.image_files[0]).is_file() for c in cases) and len(cases) == 7
    assert validate_raw_dataset(target, check_images=True) == []


def test_sequence_family_rules():
    assert [sequence_family(s) for s in ("t1", "t1_2", "FLAIR", "scan_3", "dwi_b1000", "t2s_12")] == \
        ["t1", "t1", "flair", "unknown", "dwi_b1000", "t2s"]


def fomo60k_bad_tree(root: Path) -> dict[str, Path]:
    fomo60k_tree(root)
    bad = {"empty": root / "sub_3/ses_1/t1.nii.gz", "truncated": root / "sub_4/ses_1/t1.nii.gz",
           "nan": root / "sub_5/ses_1/t1.nii.gz", "4d": root / "sub_6/ses_1/t1.nii.gz",
           "outside": root / "sub_7/t1.nii.gz"}
    bad["empty"].parent.mkdir(parents=True)
    bad["empty"].write_bytes(b"")
    truncate(write_nifti(bad["truncated"], shape=(20, 20, 20)))
    data = np.ones((6, 6, 6), np.float32)
    data[2, 2, 2] = np.nan
    write_nifti(bad["nan"], data)
    write_nifti(bad["4d"], shape=(6, 6, 6, 3))
    write_nifti(bad["outside"], shape=(6, 6, 6))
    return bad


@pytest.mark.parametrize("flag, caught", [(None, {"empty", "outside"}),
                                          ("--check-headers", {"empty", "outside", "truncated", "4d"}),
                                          ("--check-images", {"empty", "outside", "truncated", "4d", "nan"})])
def test_fomo60k_bad_inputs_are_reported_and_the_rest_converted(roots, capsys, flag, caught):
    bad = fomo60k_bad_tree(roots / "corpus")
    args = ["fomo60k", str(roots / "corpus"), "-d", "1", "--no-progress", "-np", "1"] + ([flag] if flag else [])
    assert main(args) == 1
    err = capsys.readouterr().err
    for kind, path in bad.items():
        assert (str(path) in err) == (kind in caught), kind
    assert "empty file" in err and "outside any session" in err
    if "nan" in caught:
        assert "NaN or infinite" in err and "4D" in err and "truncated" in err
    manifest = load_manifest(raw(roots, "Dataset001_FOMO60K"))
    listed = {Path(manifest.absolute_path(im)) for im in manifest.images}
    assert len(manifest.images) == 7 + 3 - len(caught - {"empty", "outside"})
    assert not listed & {bad[k] for k in caught}
    assert main(args + ["--skip-bad"]) == 0


def test_fomo60k_rerun_is_idempotent(roots):
    src = fomo60k_tree(roots / "corpus")
    convert_fomo60k(src, 1, progress=False)
    first = (raw(roots, "Dataset001_FOMO60K") / "manifest.json").read_bytes()
    convert_fomo60k(src, 1, progress=False)
    target = raw(roots, "Dataset001_FOMO60K")
    assert (target / "manifest.json").read_bytes() == first
    assert sorted(p.name for p in target.iterdir()) == ["dataset.json", "manifest.json"]  # no temp leftovers


def test_conflicting_dataset_id_is_refused(roots, capsys):
    src = fomo60k_tree(roots / "corpus")
    convert_fomo60k(src, 1, progress=False)
    assert main(["fomo60k", str(src), "-d", "1", "--name", "Other", "--no-progress"]) == 2
    assert "already used by" in capsys.readouterr().err
