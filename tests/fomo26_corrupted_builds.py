"""The broken FOMO26 containers of fomo26/container_templates corrupted_test_builds/ @ d442af2, rebuilt from
the reasons its corruptions.txt gives (not from their files) as /app folders for `check_container.py
--edition fomo26 --direct --app`. Each says what the checker must report: the validator check that fails
(or None where the validator passes and only fomo_nn's check sees it) and the cause fomo_nn names.

corruptions.txt: task1_v1 "returns 5. Should not be an INT and should be between 0-1"; task1_v2 "SHOULD
WORK"; task2_v1 "no cuda"; task2_v2 "incorrect output shape"; task2_v3 "incorrect build platform (should
have used --arch amd64)" (an image property: a SIF header, see tests); task2_v4 "SHOULD WORK" (on a GPU);
task3_v1 "output is a list[str] rather than just str"; task3_v2 "SHOULD WORK"; task4_v1 "incorrect CLI arg
t2w"; task4_v2 "unexpected labels. Should be 0,1,2 but is 0,1,2,3,4"; task5_v1 "multiple values";
task6_v1 "inf/nan in embedding"; task6_v2 "missing dependency"; task7_v1 "assert triggered"; task7_v2
"2D"; and "upload project instead of file" (a folder given as the image, see tests).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

HEADER = '''import argparse
from pathlib import Path

parser = argparse.ArgumentParser()
for flag in {flags!r}:
    parser.add_argument(flag)
parser.add_argument("--output", required=True)
args = parser.parse_args()
output = Path(args.output)
first_input = next(getattr(args, f[2:]) for f in {flags!r} if getattr(args, f[2:]))
'''

COPY_MASK = '''import nibabel as nib
import numpy as np
reference = nib.load(first_input)
'''


@dataclass(frozen=True)
class Build:
    name: str
    task: int  # the FOMO26 task it was submitted for
    body: str  # after HEADER
    failing_check: str | None  # the validator's check that fails; None: the validator passes it
    message: str  # in the validator's message (or in fomo_nn's when failing_check is None)
    cause: str | None = None  # in fomo_nn's explanation of a failed prediction

    def write(self, root: Path, flags: tuple[str, ...]) -> Path:
        app = root / self.name
        app.mkdir(parents=True)
        (app / "predict.py").write_text(HEADER.format(flags=list(flags)) + self.body)
        return app


BUILDS = (
    Build("task1_v1", 1, 'output.write_text(f"{5:.3f}")\n', "output_probability_in_range",
          "Value 5.0 is outside the valid range [0.0, 1.0]"),
    Build("task1_v2", 1, 'output.write_text(f"{0.65:.3f}")\n', None, ""),
    Build("task2_v1", 2, COPY_MASK + 'import torch\nmask = torch.zeros(reference.shape, dtype=torch.uint8)\n'
          'mask.to("cuda:0")\nnib.save(nib.Nifti1Image(mask.numpy(), reference.affine), str(output))\n',
          "prediction_runs_successfully", "exited with rc=1", "uses CUDA but the container has none"),
    Build("task2_v2", 2, COPY_MASK + 'shape = (reference.shape[0] - 10, *reference.shape[1:])\n'
          'nib.save(nib.Nifti1Image(np.zeros(shape, np.uint8), reference.affine), str(output))\n',
          "output_shape_matches_any_input", "does not match any input shape"),
    Build("task3_v1", 3, 'output.write_text(str([45.0]))\n', "output_is_single_float", "'[45.0]' is not a valid float"),
    Build("task3_v2", 3, 'output.write_text(str(45.0))\n', None, ""),
    Build("task4_v1", 4, COPY_MASK + 'reference = nib.load(args.t2w)\n', "prediction_runs_successfully",
          "exited with rc=1", "reads the argument 't2w', which its parser does not define"),
    Build("task4_v2", 4, COPY_MASK + 'labels = np.arange(np.prod(reference.shape)) % 5\n'
          'nib.save(nib.Nifti1Image(labels.reshape(reference.shape).astype(np.int16), reference.affine), '
          'str(output))\n', "output_labels_in_range", "Max label 4 exceeds allowed max_label=2"),
    Build("task5_v1", 5, 'with open(output.parent / f"{output.stem}.txt", "w") as handle:\n'
          '    for value in (0.5, 0.2):\n        handle.write(f"{value:.3f}\\n")\n', "output_is_single_float",
          "Expected exactly 1 token, got 2"),
    Build("task6_v1", 6, 'import numpy as np\nvector = np.zeros(768, np.float32)\nvector[10:20] = np.inf\n'
          'vector[100:124] = np.nan\nnp.save(output, vector)\n', "output_numpy_is_finite",
          "Array contains NaN or Inf values"),
    Build("task6_v2", 6, 'import fomo26_backbone_not_in_this_image  # the image installs no requirements\n',
          "prediction_runs_successfully", "exited with rc=1",
          "missing dependency: the image does not install 'fomo26_backbone_not_in_this_image'"),
    Build("task7_v1", 7, 'assert 1 == 0, "a check the author left in"\n', "prediction_runs_successfully",
          "exited with rc=1", "an assert failed in predict.py"),
    Build("task7_v2", 7, 'import numpy as np\nnp.save(output, np.zeros((3, 768), np.float32))\n',
          "output_is_1d_vector", "Expected 1-D array after squeezing, got shape (3, 768)"),
)

# corruptions.txt's task2_v4: the no-cuda script of task2_v1 in a CUDA image, which "SHOULD WORK" where the
# instance has a GPU; without one it fails as task2_v1 does.
GPU_ONLY = Build("task2_v4", 2, BUILDS[2].body, "prediction_runs_successfully", "exited with rc=1",
                 "uses CUDA but the container has none")
