"""Read any 3D MRI into a float32 RAS array plus the properties needed to write back exactly.

NIfTI goes through nibabel (so qform/sform codes, scaling slopes and the full header survive);
other formats (.nrrd, .mha, .mhd, .nii via SimpleITK-only paths) go through SimpleITK, whose LPS
geometry is converted to a RAS affine.
"""
from __future__ import annotations

import base64
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

from fomo_nn.io.errors import BadInputError
from fomo_nn.utils.files import write_atomically
from fomo_nn.io.geometry import (inverse_ornt, reorient_array, reoriented_affine, spacing_from_affine,
                                 to_ras_transform)

NIFTI_ENDINGS = (".nii.gz", ".nii")
SITK_ENDINGS = (".nrrd", ".nhdr", ".mha", ".mhd")
SUPPORTED_ENDINGS = NIFTI_ENDINGS + SITK_ENDINGS
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def file_ending(path: str | os.PathLike) -> str:
    name = str(path).lower()
    for ending in SUPPORTED_ENDINGS:
        if name.endswith(ending):
            return ending
    raise BadInputError(path, f"unsupported file type; expected one of {', '.join(SUPPORTED_ENDINGS)}")


@dataclass
class ImageProperties:
    """Everything needed to put an array computed in RAS back onto the input's exact grid."""

    source: str
    original_shape: list[int]
    original_affine: list[list[float]]
    ras_affine: list[list[float]]
    spacing: list[float]  # mm, in RAS array order
    to_ras: list[list[float]]  # nibabel orientation transform original -> RAS
    original_dtype: str
    nifti_header: str | None = None  # base64 of the 348-byte NIfTI-1 header, when the input was NIfTI-1
    nifti2: bool = False
    scaling: list[float] = field(default_factory=lambda: [1.0, 0.0])  # on-disk slope, intercept
    extra: dict = field(default_factory=dict)

    @property
    def ras_shape(self) -> tuple[int, int, int]:
        ornt = np.asarray(self.to_ras)
        shape = [0, 0, 0]
        for source_axis, (target_axis, _) in enumerate(ornt):
            shape[int(target_axis)] = self.original_shape[source_axis]
        return tuple(shape)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ImageProperties":
        return cls(**data)


def _check_values(path, data: np.ndarray) -> None:
    if data.ndim != 3:
        raise BadInputError(path, f"expected a 3D image, got shape {tuple(data.shape)}")
    if min(data.shape) < 2:
        raise BadInputError(path, f"degenerate 3D image of shape {tuple(data.shape)}")
    if not np.isfinite(data).all():
        bad = int((~np.isfinite(data)).sum())
        raise BadInputError(path, f"{bad} voxels are NaN or infinite")


def _squeeze_to_3d(path, data: np.ndarray) -> np.ndarray:
    if data.ndim == 4 and data.shape[3] == 1:
        return data[..., 0]
    if data.ndim > 3:
        raise BadInputError(path, f"expected a 3D image but it is {data.ndim}D with shape {tuple(data.shape)}"
                                  " (a 4D series cannot be used as one channel)")
    return data


def read_image(path: str | os.PathLike) -> tuple[np.ndarray, ImageProperties]:
    """Return (float32 array in RAS voxel order, properties). Raises BadInputError on bad input."""
    path = Path(path)
    if not path.is_file():
        raise BadInputError(path, "file does not exist")
    ending = file_ending(path)
    if ending in NIFTI_ENDINGS:
        data, affine, dtype, header, nifti2, scaling = _read_nifti(path)
    else:
        data, affine, dtype = _read_sitk(path)
        header, nifti2, scaling = None, False, (1.0, 0.0)
    _check_values(path, data)
    ornt = to_ras_transform(affine)
    ras_data = reorient_array(data, ornt)
    ras_affine = reoriented_affine(affine, data.shape, ornt)
    props = ImageProperties(
        source=str(path), original_shape=[int(s) for s in data.shape], original_affine=np.asarray(affine).tolist(),
        ras_affine=ras_affine.tolist(), spacing=list(spacing_from_affine(ras_affine)), to_ras=ornt.tolist(),
        original_dtype=str(dtype), nifti_header=header, nifti2=nifti2,
        scaling=[float(v) for v in scaling])
    return ras_data.astype(np.float32, copy=False), props


def _read_nifti(path: Path):
    try:
        image = nib.load(str(path))
        data = _squeeze_to_3d(path, np.asanyarray(image.dataobj))  # scaling slope/intercept applied
    except BadInputError:
        raise
    except Exception as error:  # nibabel raises many types for truncated or corrupt files
        raise BadInputError(path, f"unreadable NIfTI file ({type(error).__name__}: {error})") from None
    nifti2 = isinstance(image, nib.Nifti2Image)
    header = None if nifti2 else base64.b64encode(image.header.binaryblock).decode("ascii")
    affine = image.affine
    scaling = (float(image.dataobj.slope), float(image.dataobj.inter))
    return (np.asarray(data, dtype=np.float32), np.asarray(affine, dtype=float), image.get_data_dtype(), header,
            nifti2, scaling)


def _read_sitk(path: Path):
    import SimpleITK as sitk

    try:
        image = sitk.ReadImage(str(path))
    except Exception as error:
        raise BadInputError(path, f"unreadable image ({error})") from None
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise BadInputError(path, f"expected a 3D scalar image, got {image.GetDimension()}D with "
                                  f"{image.GetNumberOfComponentsPerPixel()} components")
    data = sitk.GetArrayFromImage(image).transpose(2, 1, 0)  # sitk arrays are z,y,x
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    lps = np.eye(4)
    lps[:3, :3] = direction * np.asarray(image.GetSpacing())[None, :]
    lps[:3, 3] = image.GetOrigin()
    return data.astype(np.float32), _LPS_TO_RAS @ lps, data.dtype


def ras_to_original(array: np.ndarray, props: ImageProperties) -> np.ndarray:
    """Map an array on the RAS grid of `props` back into the input's voxel order."""
    expected = props.ras_shape
    if tuple(array.shape[:3]) != expected:
        raise ValueError(f"array shape {array.shape[:3]} does not match the RAS grid {expected} of {props.source}")
    return reorient_array(array, inverse_ornt(np.asarray(props.to_ras)))


def write_image(array_ras: np.ndarray, props: ImageProperties, path: str | os.PathLike,
                dtype: str | np.dtype | None = None) -> None:
    """Write `array_ras` (on the RAS grid of `props`) into the input's exact grid and header.

    `dtype=None` keeps the input's on-disk dtype and scaling (used for exact round trips); pass e.g.
    `np.uint8` for masks or `np.float32` for probabilities. The file appears atomically.
    """
    data = ras_to_original(np.asarray(array_ras), props)
    path = Path(path)
    ending = file_ending(path)
    if ending in NIFTI_ENDINGS:
        _write_nifti(data, props, path, dtype)
    else:
        _write_sitk(data, props, path, dtype)


def _write_nifti(data: np.ndarray, props: ImageProperties, path: Path, dtype) -> None:
    affine = np.asarray(props.original_affine)
    if props.nifti_header is not None:
        header = nib.Nifti1Header(binaryblock=base64.b64decode(props.nifti_header))
        qform_code, sform_code = int(header["qform_code"]), int(header["sform_code"])
    else:
        header, qform_code, sform_code = nib.Nifti1Header(), 1, 1
    keep_scaling = dtype is None
    target_dtype = np.dtype(props.original_dtype if dtype is None else dtype)
    header.set_data_dtype(target_dtype)
    slope, inter = props.scaling
    if keep_scaling and (slope, inter) != (1.0, 0.0):
        raw = (data.astype(np.float64) - inter) / slope
        if np.issubdtype(target_dtype, np.integer):
            raw = np.rint(raw)
        image = nib.Nifti1Image(raw.astype(target_dtype), affine, header=header)
        image.header.set_slope_inter(slope, inter)
    else:
        if np.issubdtype(target_dtype, np.integer) and np.issubdtype(data.dtype, np.floating):
            data = np.rint(data)
        image = nib.Nifti1Image(data.astype(target_dtype), affine, header=header)
        image.header.set_slope_inter(1.0, 0.0)
    image.set_qform(affine, code=qform_code or 0)
    image.set_sform(affine, code=sform_code or 0)
    write_atomically(path, lambda temp: nib.save(image, str(temp)), ".nii.gz" if str(path).endswith(".gz") else ".nii")


def _write_sitk(data: np.ndarray, props: ImageProperties, path: Path, dtype) -> None:
    import SimpleITK as sitk

    target_dtype = np.dtype(props.original_dtype if dtype is None else dtype)
    image = sitk.GetImageFromArray(data.astype(target_dtype).transpose(2, 1, 0))
    lps = np.linalg.inv(_LPS_TO_RAS) @ np.asarray(props.original_affine)
    spacing = np.sqrt((lps[:3, :3] ** 2).sum(axis=0))
    image.SetSpacing([float(s) for s in spacing])
    image.SetDirection([float(v) for v in (lps[:3, :3] / spacing[None, :]).ravel()])
    image.SetOrigin([float(v) for v in lps[:3, 3]])
    write_atomically(path, lambda temp: sitk.WriteImage(image, str(temp)), path.suffix)
