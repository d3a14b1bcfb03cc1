"""Header geometry is judged before voxels are read; dataset.json types are named; one raw-dataset validator."""
from __future__ import annotations

import json
import struct
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from builders import (affine_for, brain_image, make_classification_dataset, make_segmentation_dataset, simple_plans,
                      write_nifti)

from fomo_nn.datasets.dataset_json import load_dataset_json
from fomo_nn.datasets.validation import read_grid, validate_raw_dataset
from fomo_nn.io import BadInputError, read_image, write_image
from fomo_nn.preprocessing import preprocess_case
from fomo_nn.preprocessing.verify import verify_dataset

SHAPE = (8, 9, 7)


def _nifti(path: Path, data=None, affine=None, qform=None, qform_code=1, sform_code=1, pixdim=None) -> Path:
    """A tiny NIfTI-1 file; `pixdim` overwrites pixdim[1:4] on disk (nibabel will not write bad ones)."""
    affine = np.eye(4) if affine is None else affine
    data = np.random.default_rng(0).normal(100, 10, SHAPE).astype(np.float32) if data is None else data
    image = nib.Nifti1Image(data, affine)
    image.set_qform(affine if qform is None else qform, code=qform_code)
    image.set_sform(affine, code=sform_code)
    nib.save(image, str(path))
    if pixdim is not None:
        block = bytearray(path.read_bytes())
        struct.pack_into("<3f", block, 80, *pixdim)  # pixdim[1..3] of the 348-byte header
        path.write_bytes(bytes(block))
    return path


def _refused(path, pattern):
    """Both the data reader and the header-level validator refuse `path`, naming it."""
    for read in (read_image, read_grid):
        with pytest.raises(BadInputError, match=pattern) as error:
            read(path)
        assert error.value.path == str(path)


# ------------------------------------------------------------------------------------------------ geometry
@pytest.mark.parametrize("pixdim", [(0.0, 1.0, 1.0), (-2.0, 1.0, 1.0), (float("nan"), 1.0, 1.0)])
@pytest.mark.parametrize("sform_code", [0, 1])
def test_bad_pixdim_is_refused_not_read_as_1mm(tmp_path, pixdim, sform_code):
    path = _nifti(tmp_path / "bad_pixdim.nii", sform_code=sform_code, pixdim=pixdim)
    _refused(path, r"pixdim\[1:4\]")


def test_sheared_affine_is_refused_as_itk_does(tmp_path):
    sheared = np.eye(4)
    sheared[0, 1] = 0.5
    _refused(_nifti(tmp_path / "shear.nii", affine=sheared, qform_code=0), "sheared .*63.43 degrees")
    # a sheared sform beside an orthogonal qform: nibabel would use the sform, ITK the qform
    _refused(_nifti(tmp_path / "shear_q.nii", affine=sheared, qform=np.eye(4)), "sform, which nibabel uses, is sheared")
    rotation = np.eye(4)
    rotation[:3, :3] = [[np.cos(0.3), -np.sin(0.3), 0], [np.sin(0.3), np.cos(0.3), 0], [0, 0, 1]]
    rotation[:3, :3] = rotation[:3, :3] @ np.diag([0.9, 1.1, 2.5])  # oblique and anisotropic is fine
    assert read_grid(_nifti(tmp_path / "oblique.nii", affine=rotation)).ras_shape is not None


def test_absurd_spacing_is_refused_from_the_header_before_the_voxels_are_read(tmp_path):
    thick = _nifti(tmp_path / "thick.nii", affine=np.diag([50.0, 50.0, 50.0, 1.0]))
    thick.write_bytes(thick.read_bytes()[:352])  # no voxel data left: only a header-first check can name the spacing
    for read in (read_image, read_grid):
        with pytest.raises(BadInputError, match=r"spacing \(50.0, 50.0, 50.0\) mm exceeds 20 mm"):
            read(thick)
    meters = _nifti(tmp_path / "meters.nii", affine=np.diag([0.001, 0.001, 0.001, 1.0]))
    image = nib.load(meters)
    image.header.set_xyzt_units("meter")
    nib.save(image, meters)
    _refused(meters, "units are 'meter'")


def test_a_case_too_large_at_the_target_spacing_is_refused_before_resampling(tmp_path, monkeypatch):
    from fomo_nn.preprocessing import resampling

    monkeypatch.setattr(resampling, "MAX_RESAMPLED_GIB", 0.001, raising=False)  # 1 MiB: the 4 GiB rule, scaled down
    image = write_nifti(tmp_path / "t1.nii.gz", brain_image((24, 24, 24)), affine_for((4.0, 4.0, 4.0)))
    with pytest.raises(BadInputError, match=r"spacing \(4.0, 4.0, 4.0\) mm to the target spacing \(1.0, 1.0, 1.0\)"
                                            r" mm would turn shape .* into .* GiB for 1 channel") as error:
        preprocess_case([image], simple_plans())
    assert error.value.path == str(image)


def test_complex_rgb_and_vector_images_are_refused_naming_the_file(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # not numpy's ComplexWarning: a refusal
        _refused(_nifti(tmp_path / "complex.nii", data=np.ones(SHAPE, np.complex64)), "complex-valued data")
    rgb = np.zeros(SHAPE, dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    _refused(_nifti(tmp_path / "rgb.nii", data=rgb), "RGB/colour image")
    _refused(_nifti(tmp_path / "vector.nii", data=np.ones((*SHAPE, 1, 3), np.float32)), "vector/RGB image")


def test_simpleitk_formats_get_the_same_rules(tmp_path):
    import SimpleITK as sitk

    sheared = sitk.GetImageFromArray(np.ones(SHAPE[::-1], np.float32))
    sheared.SetDirection([1, 0.5, 0, 0, 1, 0, 0, 0, 1])
    sitk.WriteImage(sheared, str(tmp_path / "shear.mha"))
    _refused(tmp_path / "shear.mha", "sheared")
    sitk.WriteImage(sitk.GetImageFromArray(np.ones((*SHAPE[::-1], 3), np.uint8), isVector=True),
                    str(tmp_path / "rgb.mha"))
    _refused(tmp_path / "rgb.mha", "vector/RGB image")


def test_disagreeing_qform_is_named_and_kept_in_the_written_header(tmp_path):
    from fomo_nn.io.geometry import GeometryWarning

    sform = np.diag([1.0, 1.0, 1.0, 1.0])
    sform[:3, 3] = [10.0, 0.0, 0.0]
    path = _nifti(tmp_path / "qs.nii", affine=sform, qform=np.eye(4), sform_code=2)
    with pytest.warns(GeometryWarning, match=r"qs\.nii: qform and sform disagree by up to 10 mm; using the sform"):
        data, props = read_image(path)
    np.testing.assert_allclose(props.original_affine, sform)
    out = tmp_path / "out.nii"
    write_image(data, props, out)
    written = nib.load(out).header
    np.testing.assert_allclose(written.get_qform(), np.eye(4))  # the input's qform, not a copy of the sform
    np.testing.assert_allclose(written.get_sform(), sform)
    oblique = np.eye(4)
    oblique[:3, :3] = [[np.cos(0.3), -np.sin(0.3), 0], [np.sin(0.3), np.cos(0.3), 0], [0, 0, 1]]
    oblique[:3, :3] = oblique[:3, :3] @ np.diag([0.9375, 0.9375, 3.3])
    oblique[:3, 3] = [-101.3, 87.2, -40.7]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # qform == sform up to the quaternion's float32 precision: silent
        read_image(_nifti(tmp_path / "agree.nii", affine=oblique, sform_code=2))


def test_header_first_reading_keeps_accepting_nifti2_big_endian_and_extensions(tmp_path):
    data = np.random.default_rng(1).normal(100, 10, SHAPE).astype(np.float32)
    nib.save(nib.Nifti2Image(data, np.diag([1.0, 1.2, 2.0, 1.0])), tmp_path / "two.nii.gz")
    image = nib.Nifti1Image(data.astype(">f4"), np.eye(4),
                            header=nib.Nifti1Header(endianness=">"))
    image.header.extensions.append(nib.nifti1.Nifti1Extension("comment", b"a long comment " * 40))
    nib.save(image, tmp_path / "big_endian_ext.nii")
    for name in ("two.nii.gz", "big_endian_ext.nii"):
        array, props = read_image(tmp_path / name)
        np.testing.assert_allclose(array.sum(), data.sum(), rtol=1e-5)
        assert read_grid(tmp_path / name).ras_shape == props.ras_shape


# ------------------------------------------------------------------------------------------------ dataset.json
@pytest.mark.parametrize("change, key", [
    ({"file_ending": 5}, "file_ending"), ({"file_ending": ".png"}, "file_ending"),
    ({"case_subjects": ["case_000"]}, "case_subjects"), ({"channel_names": {"zero": "T1"}}, "channel_names"),
    ({"channel_names": {"00": "T1"}}, "channel_names"), ({"numTraining": "4"}, "numTraining"),
    ({"name": ["x"]}, "name"), ({"labels": {"background": 0, "lesion": 200}}, "labels"),
    ({"channel_names": {"0": {"name": "T1"}}}, "channel_names"),
])
def test_wrong_dataset_json_types_are_one_message_naming_the_key(tmp_path, change, key):
    folder = make_segmentation_dataset(tmp_path, num_cases=1, shapes=((12, 12, 12),), channels=("t1",))
    data = json.loads((folder / "dataset.json").read_text())
    (folder / "dataset.json").write_text(json.dumps({**data, **change}))
    with pytest.raises(BadInputError) as error:
        load_dataset_json(folder)
    assert error.value.path == str(folder / "dataset.json") and key in error.value.problem
    assert [str(p) for p in validate_raw_dataset(folder)] == [str(error.value)]


def test_classes_with_non_integer_keys_are_named(tmp_path):
    folder = make_classification_dataset(tmp_path, num_cases=2, shape=(12, 12, 12))
    data = json.loads((folder / "dataset.json").read_text())
    data["classes"] = {"a": "healthy", "b": "infarct"}
    (folder / "dataset.json").write_text(json.dumps(data))
    with pytest.raises(BadInputError, match="classes keys must be the indices '0', '1', ...; 'a' is not"):
        load_dataset_json(folder)


# ------------------------------------------------------------------------------------------------ one validator
def _problems(found) -> set[tuple[str, str]]:
    return {(Path(p.path if hasattr(p, "path") else p.file).name, p.problem) for p in found}


def test_validate_and_verify_are_one_validator(tmp_path):
    """Each defect here was accepted by one of the two old validators and refused by the other."""
    folder = make_classification_dataset(tmp_path, num_cases=4, shape=(14, 14, 12))
    write_nifti(folder / "imagesTr" / "cls_001_0001.nii.gz", np.zeros((14, 14, 12)),
                affine_for((1.0, 1.0, 1.2)))  # all zero: preprocessing refuses it
    write_nifti(folder / "labelsTr" / "cls_002.nii.gz", np.zeros((14, 14, 12)), affine_for(),
                np.uint8)  # a stale mask beside the targets
    for channel in range(2):  # a case id no preprocessed file can be named after
        write_nifti(folder / "imagesTr" / f"-x_{channel:04d}.nii.gz", brain_image((14, 14, 12)), affine_for())
    (folder / "labelsTr" / "-x.txt").write_text("1\n")
    write_nifti(folder / "imagesTs" / "ts_000_0000.nii.gz", brain_image((14, 14, 12)), affine_for())
    write_nifti(folder / "imagesTs" / "ts_000_0001.nii.gz", brain_image((14, 14, 13)), affine_for())
    data = json.loads((folder / "dataset.json").read_text())
    (folder / "dataset.json").write_text(json.dumps({**data, "numTraining": 5}))

    validated = _problems(validate_raw_dataset(folder, check_images=True))
    assert validated == _problems(verify_dataset(folder, num_workers=1, progress=False))
    text = "\n".join(f"{name}: {problem}" for name, problem in sorted(validated))
    assert "cls_001_0001.nii.gz: image is empty" in text
    assert "cls_002.nii.gz: a mask beside the targets" in text
    assert "'-x' is not a usable case id" in text
    assert "ts_000_0001.nii.gz: grid differs from its first channel" in text
    assert len(validated) == 4


def test_validator_in_worker_processes_reports_the_same_in_the_same_order(tmp_path):
    folder = make_segmentation_dataset(tmp_path, num_cases=3, shapes=((12, 12, 12),), channels=("t1",))
    write_nifti(folder / "imagesTr" / "case_001_0000.nii.gz", np.zeros((12, 12, 12)), affine_for())
    write_nifti(folder / "labelsTr" / "case_002.nii.gz", np.full((12, 12, 12), 7), affine_for(), np.uint8)
    alone = [str(p) for p in validate_raw_dataset(folder, num_processes=1)]
    assert [str(p) for p in validate_raw_dataset(folder, num_processes=2)] == alone and len(alone) == 2
    assert "label values [7] are not declared" in alone[1]
