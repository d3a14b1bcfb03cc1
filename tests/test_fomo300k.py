"""fomo_nn_convert fomo300k on a small FOMO300K-layout tree: zipped sessions, OpenNeuro ds folders, the three
metadata tables, bad inputs; then plan, preprocess and two MAE epochs on what it listed.

Layout and column names follow asparagus_preprocessing @ fce45b3 (PT902_FOMO300K_HF.py, utils/bids/bids.py).
"""
from __future__ import annotations

import io
import json
import struct
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from dataset_conversion.fomo300k import convert_fomo300k
from dataset_conversion.fomo300k_layout import sequence_family, sequence_stem
from dataset_conversion.fomo300k_metadata import (normalize_age, normalize_field_strength, normalize_sex,
                                                  normalize_vendor)
from dataset_conversion.fomo300k_zips import ZipJob, extract_session
from fomo_nn.cli.convert import main as convert_main
from fomo_nn.datasets.cases import list_cases
from fomo_nn.datasets.manifest import load_manifest
from fomo_nn.utils.errors import BadInputError

AFFINE = np.diag([4.0, 4.0, 4.0, 1.0])


def nifti_bytes(seed: int, shape=(12, 12, 10)) -> bytes:
    rng = np.random.default_rng(seed)
    data = np.zeros(shape, dtype=np.float32)
    data[2:-2, 2:-2, 2:-2] = rng.normal(100, 10, size=tuple(n - 4 for n in shape))
    return nib.Nifti1Image(data, AFFINE).to_bytes()


def gz(payload: bytes) -> bytes:
    import gzip
    return gzip.compress(payload, compresslevel=1)


def write(path: Path, payload: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(payload.encode() if isinstance(payload, str) else payload)
    return path


def write_zip(path: Path, members: dict[str, bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for name, payload in members.items():
            archive.writestr(name, payload)
    return path


def tsv(rows: list[list]) -> str:
    return "\n".join("\t".join(str(v) for v in row) for row in rows) + "\n"


def fomo300k_tree(root: Path) -> Path:
    """PT001: folders (card naming); PT021: zipped BIDS-named sessions; PT030: OpenNeuro ds folders, one zipped."""
    write(root / "PT001_ClevelandCCF/sub-01/ses-01/t1w.nii.gz", gz(nifti_bytes(1)))
    write(root / "PT001_ClevelandCCF/sub-01/ses-01/scan.nii.gz", gz(nifti_bytes(2)))
    write(root / "PT001_ClevelandCCF/sub-02/ses-01/t1w.nii.gz", gz(nifti_bytes(3)))
    write_zip(root / "PT021_IXI/sub-002/ses-01.zip", {
        "ses-01/anat/sub-002_ses-01_T1w.nii.gz": gz(nifti_bytes(4)),
        "ses-01/anat/sub-002_ses-01_T2w.nii.gz": gz(nifti_bytes(5)),
        "ses-01/dwi/sub-002_ses-01_dwi_bval1000.nii.gz": gz(nifti_bytes(6)),
        "ses-01/anat/sub-002_ses-01_T1w.json": b"{}"})
    write_zip(root / "PT021_IXI/sub-002/ses-02.zip", {  # members without the session folder
        "anat/sub-002_ses-02_run-1_T1w.nii.gz": gz(nifti_bytes(7)),
        "anat/sub-002_ses-02_run-2_T1w.nii.gz": gz(nifti_bytes(8))})
    write(root / "PT030_OpenNeuro/ds000117/sub-01/ses-01/anat/sub-01_ses-01_T1w.nii.gz", gz(nifti_bytes(9)))
    write_zip(root / "PT030_OpenNeuro/ds000228/sub-01/ses-01.zip",
              {"ses-01/anat/sub-01_ses-01_FLAIR.nii.gz": gz(nifti_bytes(10))})
    write(root / "participants.tsv", tsv([
        ["dataset", "participant_id", "session_id", "age", "sex", "group"],
        ["PT001_ClevelandCCF", "sub-01", "ses-01", "34", "M", "Control"],
        ["PT001_ClevelandCCF", "sub-02", "", "20-30", "female", "Control"],
        ["PT021_IXI", "sub-002", "ses-01", "61.5Y", "F", "Control"],
        ["PT021_IXI", "sub-002", "ses-02", "63", "F", "Control"],
        ["PT030_OpenNeuro/ds000117", "sub-01", "ses-01", "n/a", "m", ""],
        ["PT030_OpenNeuro/ds000228", "sub-01", "ses-01", "7", "F", ""]]))
    write(root / "mri_info.tsv", tsv([
        ["dataset", "participant_id", "session_id", "filename", "Modality", "MagneticFieldStrength", "Manufacturer"],
        ["PT001_ClevelandCCF", "sub-01", "ses-01", "sub-01/ses-01/anat/sub-01_ses-01_T1w.nii.gz", "MR", "3",
         "SIEMENS"],
        ["PT021_IXI", "sub-002", "ses-01", "sub-002/ses-01/anat/sub-002_ses-01_T1w.nii.gz", "MR", "15000",
         "Philips Medical Systems"],
        ["PT021_IXI", "sub-002", "ses-01", "sub-002/ses-01/dwi/sub-002_ses-01_dwi_bval1000.nii.gz", "MR", "1.5",
         "Philips Medical Systems"],
        ["PT030_OpenNeuro/ds000117", "sub-01", "ses-01", "sub-01/ses-01/anat/sub-01_ses-01_T1w.nii.gz", "MR",
         "2.89362", "GE MEDICAL SYSTEMS"]]))
    write(root / "mapping.tsv", tsv([
        ["dataset", "old_path", "new_path", "old_filename", "new_filename", "participant_id", "session_id", "modality"],
        ["PT021_IXI", "IXI002-T1.nii.gz", "sub-002/ses-01/anat/sub-002_ses-01_T1w.nii.gz", "IXI002-T1.nii.gz",
         "sub-002_ses-01_T1w.nii.gz", "sub-002", "ses-01", "anat"]]))
    write(root / "LICENSE", "terms")
    return root


@pytest.fixture()
def roots(tmp_path, monkeypatch):
    for var in ("fomo_nn_raw", "fomo_nn_preprocessed", "fomo_nn_results"):
        monkeypatch.setenv(var, str(tmp_path / var))
    return tmp_path


def test_names_and_values_follow_the_organisers_rules():
    assert sequence_stem("sub-01_ses-01_run-2_T1w", "sub-01", "ses-01") == "run-2_T1w"
    assert sequence_stem("t1w", "sub-01", "ses-01") == "t1w"
    assert [sequence_family(s) for s in ("run-2_T1w", "t1w", "scan", "dwi_bval1000", "acq-mprage_T1w")] == \
        ["t1w", "t1w", "unknown", "dwi_bval1000", "t1w"]
    assert [normalize_field_strength(v) for v in ("3", "15000", "2.89362", "", "abc", "-1", "30000")] == \
        [3.0, 1.5, 2.89, None, None, None, 3.0]
    assert [normalize_age(v) for v in ("34", "61.5Y", "20-30", "89+", "n/a", "old", "150")] == \
        [34.0, 61.5, 25.0, 89.0, None, None, None]
    assert [normalize_sex(v) for v in ("M", "female", "f", "x", "")] == ["M", "F", "F", None, None]
    assert [normalize_vendor(v) for v in ("SIEMENS", "GE MEDICAL SYSTEMS", "Philips Healthcare", "Acme", "n/a")] == \
        ["Siemens", "GE", "Philips", "Acme", None]


def test_fomo300k_manifest_joins_metadata_and_extracts_zips_once(roots):
    src = fomo300k_tree(roots / "FOMO300K")
    report = convert_fomo300k(src, 5, progress=False)
    assert report.bad == [] and report.converted == 10, report.bad
    manifest = load_manifest(roots / "fomo_nn_raw/Dataset005_FOMO300K")
    by_id = {im.image_id: im for im in manifest.images}
    assert len(by_id) == 10
    ixi = by_id["PT021_IXI_sub-002_ses-01_T1w"]
    assert (ixi.subject, ixi.session, ixi.sequence, ixi.source) == ("PT021_IXI_sub-002", "ses-01", "T1w", "PT021_IXI")
    assert (ixi.vendor, ixi.field_strength, ixi.age, ixi.sex, ixi.modality) == ("Philips", 1.5, 61.5, "F", "anat")
    assert ixi.path == "PT021_IXI/sub-002/ses-01/anat/sub-002_ses-01_T1w.nii.gz"  # extracted beside its zip
    assert by_id["PT021_IXI_sub-002_ses-01_dwi_bval1000"].modality == "dwi"
    runs = [im for im in manifest.images if im.session == "ses-02"]
    assert [im.sequence for im in runs] == ["run-1_T1w", "run-2_T1w"] and all(im.age == 63 for im in runs)
    cleveland = by_id["PT001_ClevelandCCF_sub-01_ses-01_t1w"]  # card naming joined to the BIDS-named table row
    assert (cleveland.vendor, cleveland.field_strength, cleveland.age, cleveland.sex) == ("Siemens", 3.0, 34.0, "M")
    assert by_id["PT001_ClevelandCCF_sub-02_ses-01_t1w"].age == 25.0  # subject-level row, age range
    scan = by_id["PT001_ClevelandCCF_sub-01_ses-01_scan"]
    assert scan.vendor is None and scan.age == 34.0  # no mri_info row: scanner unknown, demographics known
    on117 = by_id["PT030_OpenNeuro_ds000117_sub-01_ses-01_T1w"]
    on228 = by_id["PT030_OpenNeuro_ds000228_sub-01_ses-01_FLAIR"]
    assert on117.subject != on228.subject  # the same sub-01 in two OpenNeuro datasets is two people
    assert (on117.vendor, on117.field_strength, on117.age, on117.sex) == ("GE", 2.89, None, "M")
    assert (on228.source, on228.age, on228.sex) == ("PT030_OpenNeuro/ds000228", 7.0, "F")
    data = json.loads((roots / "fomo_nn_raw/Dataset005_FOMO300K/manifest.json").read_text())
    assert data["images_per_source"] == {"PT021_IXI": 5, "PT001_ClevelandCCF": 3, "PT030_OpenNeuro/ds000117": 1,
                                         "PT030_OpenNeuro/ds000228": 1}
    assert "vendor" not in data["images"][[im["image_id"] for im in data["images"]].index(scan.image_id)]
    cases, _ = list_cases(roots / "fomo_nn_raw/Dataset005_FOMO300K")
    assert all(Path(c.image_files[0]).is_file() for c in cases)
    assert {c.case_id: c.extra for c in cases}[ixi.image_id]["source"] == "PT021_IXI"

    stamp = (src / "PT021_IXI/sub-002/ses-01/anat/sub-002_ses-01_T1w.nii.gz").stat().st_mtime_ns
    again = convert_fomo300k(src, 5, progress=False)  # a rerun keeps extracted sessions as they are
    assert again.converted == 10 and any("already extracted" in note for note in again.notes)
    assert (src / "PT021_IXI/sub-002/ses-01/anat/sub-002_ses-01_T1w.nii.gz").stat().st_mtime_ns == stamp


def test_unzip_to_keeps_the_source_untouched(roots):
    src = fomo300k_tree(roots / "FOMO300K")
    report = convert_fomo300k(src, 6, unzip_to=roots / "unzipped", progress=False)
    assert report.converted == 10 and report.bad == []
    assert not (src / "PT021_IXI/sub-002/ses-01").exists()
    manifest = load_manifest(roots / "fomo_nn_raw/Dataset006_FOMO300K")
    flair = [im for im in manifest.images if im.sequence == "FLAIR"][0]
    assert flair.path == str(roots / "unzipped/PT030_OpenNeuro/ds000228/sub-01/ses-01/anat/sub-01_ses-01_FLAIR.nii.gz")


def test_bad_inputs_are_named_and_the_rest_converted(roots, capsys):
    src = fomo300k_tree(roots / "FOMO300K")
    write(src / "PT021_IXI/sub-003/ses-01.zip", b"PK\x03\x04 not really a zip")
    payload = io.BytesIO()
    with zipfile.ZipFile(payload, "w") as archive:
        archive.writestr("../../escape.nii.gz", gz(nifti_bytes(11)))
    write(src / "PT021_IXI/sub-004/ses-01.zip", payload.getvalue())
    write(src / "PT001_ClevelandCCF/sub-03/ses-01/t1w.nii.gz", b"")
    write(src / "PT001_ClevelandCCF/sub-03/ses-01/t2w.nii.gz", gz(nifti_bytes(12))[:40])  # truncated gzip
    write(src / "PT030_OpenNeuro/ds000117/participants.tsv", "age\tsex\n1\tM\n")  # no participant_id
    code = convert_main(["fomo300k", str(src), "-d", "7", "--no-progress", "-np", "1", "--check-headers"])
    err = capsys.readouterr().err
    assert code == 1
    assert "sub-003/ses-01.zip: damaged or unreadable session zip" in err
    assert "sub-004/ses-01.zip: damaged or unreadable session zip (unsafe member name" in err
    assert "sub-03/ses-01/t1w.nii.gz: empty file" in err
    assert "sub-03/ses-01/t2w.nii.gz" in err
    assert "ds000117/participants.tsv: has no participant_id column" in err
    assert not (roots / "escape.nii.gz").exists() and not (src / "escape.nii.gz").exists()
    assert not list(src.rglob(".*.unzipping"))  # nothing half-extracted left behind
    assert len(load_manifest(roots / "fomo_nn_raw/Dataset007_FOMO300K").images) == 10


def test_one_source_folder_alone_with_its_own_tables(roots):
    src = roots / "PT021_IXI"
    write(src / "sub-002/ses-01/anat/sub-002_ses-01_T1w.nii.gz", gz(nifti_bytes(1)))
    write(src / "participants.tsv", tsv([["participant_id", "session_id", "age", "sex"], ["sub-002", "ses-01", "40", "F"]]))
    write(src / "mri_info.tsv", tsv([["participant_id", "session_id", "filename", "MagneticFieldStrength", "Manufacturer"],
                                     ["sub-002", "ses-01", "sub-002/ses-01/anat/sub-002_ses-01_T1w.nii.gz", "3",
                                      "Philips"]]))
    report = convert_fomo300k(src, 10, progress=False)
    assert report.converted == 1 and report.bad == []
    image = load_manifest(roots / "fomo_nn_raw/Dataset010_FOMO300K").images[0]
    assert (image.image_id, image.source, image.age, image.sex, image.vendor, image.field_strength) == \
        ("PT021_IXI_sub-002_ses-01_T1w", "PT021_IXI", 40.0, "F", "Philips", 3.0)


def test_an_interrupted_extraction_is_redone_whole(tmp_path):
    archive = write_zip(tmp_path / "sub-01/ses-01.zip", {"ses-01/anat/sub-01_ses-01_T1w.nii.gz": gz(nifti_bytes(1))})
    leftover = write(tmp_path / "sub-01/.ses-01.unzipping/anat/partial.nii.gz", b"half")
    outcome = extract_session(ZipJob(str(archive), str(tmp_path / "sub-01/ses-01"), "sub-01", "ses-01"))
    assert outcome.problem is None and outcome.extracted == 1
    assert not leftover.exists()
    assert sorted(p.name for p in (tmp_path / "sub-01/ses-01/anat").iterdir()) == ["sub-01_ses-01_T1w.nii.gz"]


def test_a_member_in_a_compression_zipfile_cannot_read_is_named_and_nothing_is_left(tmp_path):
    archive = write_zip(tmp_path / "sub-01/ses-01.zip", {"ses-01/anat/sub-01_ses-01_T1w.nii.gz": gz(nifti_bytes(1))})
    data = bytearray(archive.read_bytes())
    for signature, offset in ((b"PK\x03\x04", 8), (b"PK\x01\x02", 10)):  # method field: 93 (zstandard)
        at = data.find(signature) + offset
        data[at:at + 2] = struct.pack("<H", 93)
    archive.write_bytes(bytes(data))
    outcome = extract_session(ZipJob(str(archive), str(tmp_path / "sub-01/ses-01"), "sub-01", "ses-01"))
    assert outcome.problem is not None and outcome.problem[0] == str(archive)
    assert "compression method 93" in outcome.problem[1] and outcome.extracted == 0
    assert sorted(p.name for p in (tmp_path / "sub-01").iterdir()) == ["ses-01.zip"]


def test_unknown_manifest_keys_are_refused(roots):
    src = fomo300k_tree(roots / "FOMO300K")
    convert_fomo300k(src, 8, progress=False)
    path = roots / "fomo_nn_raw/Dataset008_FOMO300K/manifest.json"
    data = json.loads(path.read_text())
    data["images"][0]["vendr"] = "GE"
    path.write_text(json.dumps(data))
    with pytest.raises(BadInputError, match="unknown key 'vendr'; did you mean 'vendor'"):
        load_manifest(path.parent)


def test_converted_corpus_plans_preprocesses_and_pretrains(roots):
    from fomo_nn.cli.plan_and_preprocess import main as plan_and_preprocess_main
    from fomo_nn.cli.train import main as train_main

    src = fomo300k_tree(roots / "FOMO300K")
    assert convert_main(["fomo300k", str(src), "-d", "9", "--no-progress", "-np", "1"]) == 0
    assert plan_and_preprocess_main(["-d", "9", "-np", "1", "--no-progress", "--base-features", "8",
                                     "--max-features", "16", "--max-patch", "16"]) == 0
    assert train_main(["9", "all", "-tr", "mae", "--epochs", "2", "--iters-per-epoch", "2", "--val-iters", "1",
                       "--num-workers", "0", "--device", "cpu", "--batch-size", "2", "--set", "token_size=4"]) == 0
    results = list((roots / "fomo_nn_results/Dataset009_FOMO300K").rglob("checkpoint_final.pth"))
    assert len(results) == 1
