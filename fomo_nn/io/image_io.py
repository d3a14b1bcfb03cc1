"""Read any 3D MRI into a float32 RAS array plus the properties needed to write back exactly.

NIfTI goes through nibabel (so qform/sform codes, scaling slopes and the full header survive);
other formats (.nrrd, .mha, .mhd, .nii via SimpleITK-only paths) go through SimpleITK, whose LPS
geometry is converted to a RAS affine.

The header is judged before any voxel is read (`read_header`): 3D scalar real data, a positive
finite voxel size (nibabel silently reads pixdim 0 as 1 mm), an orthogonal affine with a plausible
spacing (fomo_nn.io.geometry.check_affine); a qform that disagrees with the sform in use is named.
"""
from __future__ import annotations

import base64
import os
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

from fomo_nn.utils.errors import BadInputError
from fomo_nn.utils.files import write_atomically
from fomo_nn.io.geometry import (GRID_TOLERANCE_MM, GeometryWarning, check_affine, inverse_ornt, ras_shape_of,
                                 reorient_array, reoriented_affine, shear_problem, spacing_from_affine,
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
        return ras_shape_of(self.original_shape, np.asarray(self.to_ras))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ImageProperties":
        return cls(**data)


@dataclass(frozen=True)
class ImageHeader:
    """What an image's header says, already checked: judged before a single voxel is read."""

    path: str
    shape: tuple[int, int, int]  # on-disk voxel order
    affine: np.ndarray  # voxel -> world (RAS mm): nibabel's best affine, or SimpleITK's geometry in RAS
    dtype: np.dtype  # on disk

    @property
    def to_ras(self) -> np.ndarray:
        return to_ras_transform(self.affine)

    @property
    def ras_shape(self) -> tuple[int, int, int]:
        return ras_shape_of(self.shape, self.to_ras)

    @property
    def ras_affine(self) -> np.ndarray:
        return reoriented_affine(self.affine, self.shape, self.to_ras)


def read_header(path: str | os.PathLike) -> ImageHeader:
    """The checked header of one image (BadInputError naming the file otherwise); reads no voxel data."""
    return _open(Path(path))[0]


def read_image(path: str | os.PathLike) -> tuple[np.ndarray, ImageProperties]:
    """Return (float32 array in RAS voxel order, properties). Raises BadInputError on bad input.

    Every header rule (`read_header`) is applied before the voxel data is loaded.
    """
    path = Path(path)
    header, source = _open(path)
    if isinstance(source, nib.Nifti1Image):  # Nifti2Image is a subclass
        data, nifti_header, nifti2, scaling = _nifti_voxels(path, source, header)
    else:
        data, nifti_header, nifti2, scaling = _sitk_voxels(path, source), None, False, (1.0, 0.0)
    if not np.isfinite(data).all():
        bad = int((~np.isfinite(data)).sum())
        raise BadInputError(path, f"{bad} voxels are NaN or infinite")
    ornt = header.to_ras
    ras_affine = header.ras_affine
    props = ImageProperties(
        source=str(path), original_shape=list(header.shape), original_affine=header.affine.tolist(),
        ras_affine=ras_affine.tolist(), spacing=list(spacing_from_affine(ras_affine)), to_ras=ornt.tolist(),
        original_dtype=str(header.dtype), nifti_header=nifti_header, nifti2=nifti2,
        scaling=[float(v) for v in scaling])
    return reorient_array(data, ornt).astype(np.float32, copy=False), props


def _open(path: Path):
    """(checked header, the opened image: nibabel image or SimpleITK reader holding only the header)."""
    if not path.is_file():
        raise BadInputError(path, "file does not exist")
    if file_ending(path) in NIFTI_ENDINGS:
        return _open_nifti(path)
    return _open_sitk(path)


# ---------------------------------------------------------------------------------------------- shape, dtype
def _spatial_shape(path, shape, components: int = 1) -> tuple[int, int, int]:
    """The 3D shape of an image (a trailing 4th axis of 1 dropped), or BadInputError."""
    shape = tuple(int(s) for s in shape)
    if (len(shape) == 5 and shape[3] == 1) or components > 1:
        count = shape[4] if components == 1 else components
        raise BadInputError(path, f"a vector/RGB image ({count} values per voxel): fomo_nn needs one scalar image "
                                  "per channel")
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) > 3:
        raise BadInputError(path, f"expected a 3D image but it is {len(shape)}D with shape {shape}"
                                  " (a 4D series cannot be used as one channel)")
    if len(shape) < 3:
        raise BadInputError(path, f"expected a 3D image, got shape {shape}")
    if min(shape) < 2:
        raise BadInputError(path, f"degenerate 3D image of shape {shape}")
    return shape


def _check_dtype(path, dtype: np.dtype) -> None:
    if dtype.fields is not None:
        raise BadInputError(path, f"an RGB/colour image (voxel type {dtype.descr}): fomo_nn needs one scalar "
                                  "greyscale image per channel")
    if dtype.kind == "c":
        raise BadInputError(path, f"complex-valued data ({dtype}): casting would drop the imaginary part; store "
                                  "the magnitude image instead")


# ---------------------------------------------------------------------------------------------- NIfTI
def _open_nifti(path: Path):
    try:
        stored = _stored_nifti_header(path)
    except Exception as error:  # nibabel raises many types for truncated or corrupt files
        raise BadInputError(path, f"unreadable NIfTI file ({type(error).__name__}: {error})") from None
    _check_pixdim(path, stored)
    try:
        image = nib.load(str(path))
    except Exception as error:
        raise BadInputError(path, f"unreadable NIfTI file ({type(error).__name__}: {error})") from None
    if not isinstance(image, nib.Nifti1Image):
        raise BadInputError(path, f"not a NIfTI image ({type(image).__name__})")
    shape = _spatial_shape(path, image.shape)
    dtype = image.get_data_dtype()
    _check_dtype(path, dtype)
    affine = np.asarray(image.affine, dtype=float)
    _check_xforms(path, image.header, affine)
    return ImageHeader(str(path), shape, affine, dtype), image


def _stored_nifti_header(path: Path):
    """The header as it is on disk: nibabel's loader 'fixes' pixdim (0 becomes 1, -2 becomes 2) silently."""
    from nibabel.openers import ImageOpener

    with ImageOpener(str(path)) as handle:
        block = handle.read(540)
    nifti2 = 540 in (int.from_bytes(block[:4], "little"), int.from_bytes(block[:4], "big"))
    header_class, size = (nib.Nifti2Header, 540) if nifti2 else (nib.Nifti1Header, 348)
    if len(block) < size:
        raise ValueError(f"the file is shorter ({len(block)} bytes) than a NIfTI header")
    header = header_class(binaryblock=block[:size], check=False)
    if header["magic"].item() not in (b"n+1", b"ni1", b"n+2", b"ni2"):
        raise ValueError("no NIfTI magic string in the header")
    return header


def _check_pixdim(path, header) -> None:
    """pixdim[1..3] (voxel size, mm) must be finite and positive: nibabel would read 0 as 1 and -2 as 2."""
    pixdim = np.asarray(header["pixdim"][1:4], dtype=float)
    if not np.isfinite(pixdim).all() or (pixdim <= 0).any():
        raise BadInputError(path, f"the header's voxel size pixdim[1:4] is {pixdim.tolist()}: every entry must be a "
                                  "positive number of mm")
    units = header.get_xyzt_units()[0]
    if units in ("meter", "micron"):
        raise BadInputError(path, f"spatial units are '{units}': fomo_nn reads NIfTI voxel sizes as mm; rewrite the "
                                  "header in mm")


def _check_xforms(path, header, affine: np.ndarray) -> None:
    """The affine in use is usable; a qform that disagrees with the sform in use is named (GeometryWarning).

    nibabel (and so fomo_nn) uses the sform when sform_code > 0, else the qform. ITK/SimpleITK (nnU-Net)
    prefers the qform when the sform is not orthonormal, or when both are set, they differ and
    sform_code is not 1 (scanner): such files look different in those tools. A sheared sform is
    refused; a disagreeing qform is only warned about, because the sform is the NIfTI-recommended
    geometry and what a prediction's header keeps (`write_image` keeps both as they were).
    """
    qform_code, sform_code = int(header["qform_code"]), int(header["sform_code"])
    sheared = shear_problem(affine) if sform_code > 0 and qform_code > 0 else None
    if sheared and shear_problem(header.get_qform()) is None:
        raise BadInputError(path, f"the sform, which nibabel uses, is sheared ({sheared}); the qform is not, and "
                                  "ITK/SimpleITK would read that one instead: fix the sform or set sform_code 0")
    check_affine(path, affine)
    if sform_code > 0 and qform_code > 0:
        offset = float(np.abs(header.get_qform() - affine).max())
        if offset > GRID_TOLERANCE_MM:
            itk = "SimpleITK/nnU-Net read the same" if sform_code == 1 else "SimpleITK/nnU-Net read the qform instead"
            warnings.warn(f"{path}: qform and sform disagree by up to {offset:.3g} mm; using the sform (sform_code "
                          f"{sform_code}, as nibabel does; {itk})", GeometryWarning, stacklevel=2)


def _nifti_voxels(path: Path, image, header: ImageHeader):
    try:
        data = np.asanyarray(image.dataobj)  # scaling slope/intercept applied
    except Exception as error:
        raise BadInputError(path, f"unreadable NIfTI file ({type(error).__name__}: {error})") from None
    nifti2 = isinstance(image, nib.Nifti2Image)
    stored = None if nifti2 else base64.b64encode(image.header.binaryblock).decode("ascii")
    scaling = (float(image.dataobj.slope), float(image.dataobj.inter))
    return np.asarray(data, dtype=np.float32).reshape(header.shape), stored, nifti2, scaling


# ---------------------------------------------------------------------------------------------- SimpleITK
def _open_sitk(path: Path):
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except Exception as error:
        raise BadInputError(path, f"unreadable image header ({error})") from None
    shape = _spatial_shape(path, reader.GetSize(), reader.GetNumberOfComponents())
    dtype = np.dtype(sitk.GetArrayViewFromImage(sitk.Image([1] * 3, reader.GetPixelID())).dtype)
    _check_dtype(path, dtype)
    spacing = np.asarray(reader.GetSpacing(), dtype=float)
    if not np.isfinite(spacing).all() or (spacing <= 0).any():
        raise BadInputError(path, f"the header's voxel spacing is {spacing.tolist()}: every entry must be a "
                                  "positive number of mm")
    lps = np.eye(4)
    lps[:3, :3] = np.asarray(reader.GetDirection()).reshape(3, 3) * spacing[None, :]
    lps[:3, 3] = reader.GetOrigin()
    affine = _LPS_TO_RAS @ lps
    check_affine(path, affine)
    return ImageHeader(str(path), shape, affine, dtype), reader


def _sitk_voxels(path: Path, reader) -> np.ndarray:
    import SimpleITK as sitk

    try:
        image = reader.Execute()
    except Exception as error:
        raise BadInputError(path, f"unreadable image ({error})") from None
    return sitk.GetArrayFromImage(image).transpose(2, 1, 0).astype(np.float32)  # sitk arrays are z,y,x


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
    # the input's own qform, not a copy of the sform (which is `affine` when sform_code > 0)
    qform = header.get_qform() if props.nifti_header is not None and qform_code and sform_code else affine
    image.set_qform(qform, code=qform_code or 0)
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
