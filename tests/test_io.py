import gzip

import nibabel as nib
import numpy as np
import pytest

from fomo_nn.io import BadInputError, read_image, write_image
from fomo_nn.io.geometry import axcodes


def _oblique_affine():
    angle = np.deg2rad(12)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([-0.9, 1.1, 2.5])
    affine[:3, 3] = [40, -60, 12]
    return affine


GEOMETRIES = {
    "ras": np.diag([1.0, 1.0, 1.0, 1.0]),
    "lps": np.diag([-1.0, -1.0, 1.0, 1.0]),
    "pir_anisotropic": np.array([[0, 0, -1.2, 90], [-0.8, 0, 0, 100], [0, -5.0, 0, 70], [0, 0, 0, 1.0]]),
    "oblique": _oblique_affine(),
}


def _volume(shape=(17, 20, 11), seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(100, 30, size=shape).astype(np.float32)


@pytest.mark.parametrize("name", sorted(GEOMETRIES))
def test_round_trip_reproduces_voxels_and_affine(tmp_path, name):
    affine = GEOMETRIES[name]
    data = _volume()
    source = tmp_path / f"{name}.nii.gz"
    image = nib.Nifti1Image(data, affine)
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=2)
    nib.save(image, source)

    ras, props = read_image(source)
    assert axcodes(np.asarray(props.ras_affine)) == "RAS"
    assert ras.shape == props.ras_shape
    # world coordinate of every voxel is preserved by the reorientation
    index = np.array([3, 5, 7])
    original_index = np.array(np.unravel_index(np.argmax(data), data.shape))
    ras_index = np.array(np.unravel_index(np.argmax(ras), ras.shape))
    np.testing.assert_allclose(affine @ np.r_[original_index, 1], np.asarray(props.ras_affine) @ np.r_[ras_index, 1],
                               atol=1e-5)
    assert index.size == 3

    out = tmp_path / "out.nii.gz"
    write_image(ras, props, out)
    back = nib.load(out)
    np.testing.assert_array_equal(np.asanyarray(back.dataobj), data)
    np.testing.assert_allclose(back.affine, affine, atol=1e-6)
    assert int(back.header["qform_code"]) == 1 and int(back.header["sform_code"]) == 2
    assert back.shape == data.shape


def test_int16_with_slope_round_trip_is_exact(tmp_path):
    raw = np.random.default_rng(1).integers(-300, 3000, size=(12, 14, 9)).astype(np.int16)
    affine = GEOMETRIES["lps"]
    image = nib.Nifti1Image(raw, affine)
    image.header.set_slope_inter(0.25, 10.0)
    source = tmp_path / "scaled.nii"
    nib.save(image, source)

    ras, props = read_image(source)
    assert ras.dtype == np.float32
    assert np.isclose(ras.max(), raw.max() * 0.25 + 10.0)
    out = tmp_path / "scaled_out.nii"
    write_image(ras, props, out)
    back = nib.load(out)
    assert back.get_data_dtype() == np.int16
    assert back.dataobj.slope == 0.25 and back.dataobj.inter == 10.0
    np.testing.assert_array_equal(np.asanyarray(back.dataobj.get_unscaled()), raw)


def test_mask_written_as_uint8_in_input_grid(tmp_path):
    affine = GEOMETRIES["pir_anisotropic"]
    source = tmp_path / "img.nii.gz"
    nib.save(nib.Nifti1Image(_volume(), affine), source)
    ras, props = read_image(source)
    mask = (ras > 100).astype(np.uint8)
    write_image(mask, props, tmp_path / "mask.nii.gz", dtype=np.uint8)
    back = nib.load(tmp_path / "mask.nii.gz")
    assert back.get_data_dtype() == np.uint8
    np.testing.assert_array_equal(np.asanyarray(back.dataobj), (_volume() > 100).astype(np.uint8))


def test_sitk_formats_read_in_ras(tmp_path):
    import SimpleITK as sitk

    data = _volume((10, 12, 8))
    image = sitk.GetImageFromArray(data.transpose(2, 1, 0))
    image.SetSpacing((0.8, 1.0, 3.0))
    image.SetOrigin((5.0, -3.0, 2.0))
    sitk.WriteImage(image, str(tmp_path / "img.nrrd"))
    ras, props = read_image(tmp_path / "img.nrrd")
    # identity direction in LPS means x and y axes point left/posterior: RAS flips them
    np.testing.assert_array_equal(ras, data[::-1, ::-1, :])
    np.testing.assert_allclose(props.spacing, [0.8, 1.0, 3.0])
    write_image(ras, props, tmp_path / "back.nrrd")
    back = sitk.ReadImage(str(tmp_path / "back.nrrd"))
    np.testing.assert_allclose(back.GetOrigin(), (5.0, -3.0, 2.0))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back).transpose(2, 1, 0), data)


def test_bad_inputs_name_file_and_problem(tmp_path):
    nan = _volume()
    nan[1, 2, 3] = np.nan
    nib.save(nib.Nifti1Image(nan, np.eye(4)), tmp_path / "nan.nii.gz")
    with pytest.raises(BadInputError, match=r"nan\.nii\.gz: 1 voxels are NaN"):
        read_image(tmp_path / "nan.nii.gz")

    nib.save(nib.Nifti1Image(np.zeros((8, 8, 8, 3), np.float32), np.eye(4)), tmp_path / "four_d.nii.gz")
    with pytest.raises(BadInputError, match=r"four_d\.nii\.gz: expected a 3D image but it is 4D"):
        read_image(tmp_path / "four_d.nii.gz")

    nib.save(nib.Nifti1Image(_volume((30, 30, 30)), np.eye(4)), tmp_path / "whole.nii.gz")
    payload = (tmp_path / "whole.nii.gz").read_bytes()
    (tmp_path / "truncated.nii.gz").write_bytes(payload[: len(payload) // 2])
    with pytest.raises(BadInputError, match=r"truncated\.nii\.gz: unreadable NIfTI"):
        read_image(tmp_path / "truncated.nii.gz")

    with pytest.raises(BadInputError, match="does not exist"):
        read_image(tmp_path / "missing.nii.gz")
    (tmp_path / "x.png").write_bytes(b"png")
    with pytest.raises(BadInputError, match="unsupported file type"):
        read_image(tmp_path / "x.png")
    assert gzip  # gzip-compressed and plain NIfTI both handled above


def test_atomic_writes_get_ordinary_file_modes(tmp_path):
    import os
    import stat

    from fomo_nn.utils.files import write_text_atomic

    mask = os.umask(0o022)
    try:
        path = write_text_atomic(tmp_path / "x.json", "{}")
    finally:
        os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert not list(tmp_path.glob(".x.json*"))
