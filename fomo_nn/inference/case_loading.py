"""Read the channels of one new case onto one voxel grid, ready for the plans' preprocessing.

Hospital data are not always co-registered on one grid. The reader is preprocessing's
(fomo_nn.preprocessing.case_reading.read_case_images); prediction only picks its policy
(`misaligned`, `--misaligned` on the command line):
- "resample" (default): a channel whose grid differs from the reference channel's is resampled
  onto it in world coordinates, and a warning names both files;
- "error": such a case is refused with a BadInputError naming the file and the difference.
The reference is the first model channel, or any channel the caller names (challenge task 2 writes
its mask in the FLAIR's geometry, so the FLAIR is its reference).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from fomo_nn.datasets.validation import GridMismatchError
from fomo_nn.io import BadInputError
from fomo_nn.preprocessing.case_reading import MISALIGNED_POLICIES, LoadedCase, read_case_images

__all__ = ["MISALIGNED_POLICIES", "ReadCase", "read_case"]


@dataclass
class ReadCase:
    loaded: LoadedCase  # data on the reference grid, properties of the reference image
    warnings: list[str] = field(default_factory=list)


def read_case(image_files, misaligned: str = "resample", reference_index: int = 0) -> ReadCase:
    """All channels of a case on the grid of channel `reference_index`, or a BadInputError naming the file."""
    try:
        loaded = read_case_images(image_files, misaligned=misaligned, reference_index=reference_index)
    except GridMismatchError as error:
        raise BadInputError(error.path, f"{error.problem} (--misaligned error; use --misaligned resample to "
                                        "resample it)") from None
    return ReadCase(loaded, loaded.warnings)
