"""The FOMO26 tasks as published, and where each fact comes from (commits as read).

- Task list, metrics, ranking weights (25 % tasks 2 and 4, 10 % tasks 1, 3, 5, 6, 7), "worst possible
  rank" for a task not submitted, task rank = the rank of the mean metric rank:
  fomo26/fomo26.github.io index.html @ 105db28. Its overview sentence "Tasks 5 and 6 are linear
  probing tasks" contradicts its own task list (task 5 polymicrogyria, tasks 6 and 7 the probe) and
  the validator; the task list is followed.
- Finetuning layout and file names: Sllambias/asparagus_preprocessing @ fce45b3
  (CLS002_FOMO26_Infarct: `Task_1/preprocessed/sub-XX/ses-01/{flair,adc,dwi_b1000}.nii.gz` (+ swi/t2s),
  `labels/.../label.txt`; SEG009_FOMO26_Meningioma: flair, dwi_b1000 (+ swi/t2s), `seg.nii.gz`;
  REGR002_FOMO26_BrainAge: `t1w.nii.gz`, `labels.txt` (float); SEG010_FOMO26_TrigeminalNeuralgia:
  `t2w.nii.gz`, `seg.nii.gz`, n_classes 3; CLS003_FOMO26_Polymicrogyria: `t1.nii.gz`, `labels.txt` (int)).
  The label names of task 4 (1 nerve, 2 vessel) are the site's "trigeminal nerve and surrounding
  vessels" in that order; the scripts only say there are 3 classes.
- Container flags and outputs: fomo26/container_templates container_validator/tasks.py @ d442af2
  (`--dwi` for the DWI, `--t1` for task 3's and 5's T1, `--t2` for task 4; outputs .txt, or a NIfTI with
  max label 1 (task 2) / 2 (task 4) in an input's shape, .npy embeddings for tasks 6/7). The
  validator's display names (task 3 "Lesion Volume Regression", task 5 "Hemorrhagic Transformation")
  are template leftovers; the site's titles are followed.
- Metrics and empty rules: fomo26/fomo-metrics @ 5a71db2 (segmentation.py, regression.py,
  _config.py): Dice of two empty masks 1, NSD of two empty masks 0, NSD at 1 mm with DeepMind's
  surface-distance, per-class scores without the background; the "fomo26" empty-pair policy.
  classification.py @ 505d699: a missing score is replaced by the worst for its label (`worst_missing`);
  regression.py @ 5a71db2: Pearson r of a constant input (NaN) is -100 (`constant_pearson`).
Tasks 1 and 2 keep FOMO25's channel names (dwi_b1000, flair, adc, swi_or_t2s), so a FOMO25 model's
channels read FOMO26 files; task 3's and 5's channel is `t1` and task 4's `t2`, served by the FOMO26
files t1w / t1 / t2w. Tasks 6 and 7 have no finetuning (helper EMBED's probe): rows for ranking only.
"""
from __future__ import annotations

from fomo_nn.challenges.edition import ChallengeTask, ChannelRule, Edition, Ranking
from fomo_nn.challenges.fomo25 import SWI_OR_T2S

_COMMON = {"edition": "fomo26"}
_DWI = {"dwi_b1000": "dwi"}
_PROBABILITY = "a .txt with one probability in [0, 1]"

FOMO26 = Edition(
    name="fomo26",
    tasks={
        1: ChallengeTask(number=1, title="infarct", task_type="classification",
                         channels=(ChannelRule("dwi_b1000", ("dwi_b1000",)), ChannelRule("flair", ("flair",)),
                                   ChannelRule("adc", ("adc",)), SWI_OR_T2S),
                         label_stem="label", default_name="FOMO26Task1Infarct",
                         targets={"classes": {"0": "no_infarct", "1": "infarct"}},
                         mask_stem="seg", mask_labels={"background": 0, "infarct": 1},
                         flags=_DWI, output_text=_PROBABILITY, weight=0.10, **_COMMON),
        2: ChallengeTask(number=2, title="meningioma", task_type="segmentation",
                         channels=(ChannelRule("dwi_b1000", ("dwi_b1000",)), ChannelRule("flair", ("flair",)),
                                   SWI_OR_T2S),
                         label_stem="seg", default_name="FOMO26Task2Meningioma",
                         targets={"labels": {"background": 0, "meningioma": 1}}, flags=_DWI,
                         output_endings=(".nii.gz", ".nii"), output_text="a NIfTI mask {0, 1} in an input's geometry",
                         empty_pair="fomo26", weight=0.25, **_COMMON),
        3: ChallengeTask(number=3, title="brain age", task_type="regression",
                         channels=(ChannelRule("t1", ("t1w",)),), label_stem="labels",
                         default_name="FOMO26Task3BrainAge", targets={"target": {"name": "age", "unit": "years"}},
                         target_range=(0.0, 120.0), flags={"t1w": "t1"}, output_text="a .txt with the predicted age",
                         weight=0.10, **_COMMON),
        4: ChallengeTask(number=4, title="trigeminal neuralgia", task_type="segmentation",
                         channels=(ChannelRule("t2", ("t2w",)),), label_stem="seg",
                         default_name="FOMO26Task4TrigeminalNeuralgia",
                         targets={"labels": {"background": 0, "nerve": 1, "vessel": 2}}, flags={"t2w": "t2"},
                         output_endings=(".nii.gz", ".nii"),
                         output_text="a NIfTI mask {0, 1, 2} (nerve, vessel) in the T2's geometry",
                         empty_pair="fomo26", weight=0.25, **_COMMON),
        5: ChallengeTask(number=5, title="polymicrogyria", task_type="classification",
                         channels=(ChannelRule("t1", ("t1",)),), label_stem="labels",
                         default_name="FOMO26Task5Polymicrogyria",
                         targets={"classes": {"0": "no_polymicrogyria", "1": "polymicrogyria"}},
                         output_text=_PROBABILITY, weight=0.10, **_COMMON),
        6: ChallengeTask(number=6, title="linear probing", task_type=None, channels=(ChannelRule("input", ("input",)),),
                         label_stem="", default_name="", output_endings=(".npy",),
                         output_text="a .npy embedding", weight=0.10, **_COMMON),
        7: ChallengeTask(number=7, title="bias and fairness", task_type=None,
                         channels=(ChannelRule("input", ("input",)),), label_stem="", default_name="",
                         output_endings=(".npy",), output_text="a .npy embedding (the container of task 6)",
                         weight=0.10, **_COMMON),
    },
    session="ses-01",
    ranking=Ranking("rank_of_mean", "weighted", "worst", "fomo26.github.io @ 105db28, Leaderboard & Evaluation"),
    sources="fomo26.github.io @ 105db28; container_templates @ d442af2; asparagus_preprocessing @ fce45b3; "
            "fomo-metrics @ 5a71db2",
    validator="the FOMO26 validator (fomo26/container_templates container_validator @ d442af2)",
    worst_missing=True,  # fomo-metrics classification.py compute_auroc @ 505d699
    constant_pearson=-100.0,  # fomo-metrics regression.py compute_correlation @ 5a71db2 (CORR_WORST)
)
