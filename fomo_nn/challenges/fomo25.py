"""The three FOMO25 finetuning tasks: channels, label files, targets, and what the container writes.

Task 1 (infarct, classification): dwi_b1000, flair, adc, swi_or_t2s; `label.txt` (0/1) with the infarct
mask `seg.nii.gz` beside it. Task 2 (meningioma, segmentation): dwi_b1000, flair, swi_or_t2s;
`seg.nii.gz`. Task 3 (brain age, regression): t1, t2; `label.txt` (age in years).
A session has SWI or T2* (some have both): the channel `swi_or_t2s` holds whichever it has (see sequences.py).
Layout `SRC/{preprocessed,labels}/sub_X/ses_1/`; container flags `--<sequence>` (fomo25/container-validator
main.py @ f64712b). Ranking: mean of metric ranks per task, mean over tasks, a missing task last (FOMO25
findings paper). Segmentation keeps fomo_nn's default empty-pair policy ("score", evaluation/policies.py).
"""
from __future__ import annotations

from fomo_nn.challenges.edition import ChallengeTask, ChannelRule, Edition, Ranking

SWI_OR_T2S = ChannelRule("swi_or_t2s", ("swi", "t2s"))
_COMMON = {"edition": "fomo25", "key_by_type": True}

FOMO25 = Edition(
    name="fomo25",
    tasks={
        1: ChallengeTask(number=1, title="infarct", task_type="classification",
                         channels=(ChannelRule("dwi_b1000", ("dwi_b1000",)), ChannelRule("flair", ("flair",)),
                                   ChannelRule("adc", ("adc",)), SWI_OR_T2S),
                         label_stem="label", default_name="FOMOTask1Infarct",
                         targets={"classes": {"0": "no_infarct", "1": "infarct"}},
                         mask_stem="seg", mask_labels={"background": 0, "infarct": 1},
                         output_text="a .txt with the probability of infarct", **_COMMON),
        2: ChallengeTask(number=2, title="meningioma", task_type="segmentation",
                         channels=(ChannelRule("dwi_b1000", ("dwi_b1000",)), ChannelRule("flair", ("flair",)),
                                   SWI_OR_T2S),
                         label_stem="seg", default_name="FOMOTask2Meningioma",
                         targets={"labels": {"background": 0, "meningioma": 1}},
                         output_endings=(".nii.gz", ".nii"),
                         output_text="a NIfTI mask (.nii.gz) in the FLAIR's geometry", empty_pair="score", **_COMMON),
        3: ChallengeTask(number=3, title="brain age", task_type="regression",
                         channels=(ChannelRule("t1", ("t1",)), ChannelRule("t2", ("t2",))),
                         label_stem="label", default_name="FOMOTask3BrainAge",
                         targets={"target": {"name": "age", "unit": "years"}},
                         target_range=(0.0, 120.0), output_text="a .txt with the predicted age", **_COMMON),
    },
    session="ses_1",
    ranking=Ranking("mean", "mean", "shared_last", "FOMO25 findings paper: metric ranks averaged within a task, "
                                                   "then across tasks"),
    sources="FOMO25 data release and fomo25/container-validator main.py @ f64712b",
    exact_mask_values=(0, 1),
    validator="the FOMO25 validator (fomo25/container-validator main.py)",
)

TASK_RULES = FOMO25.tasks  # task number -> ChallengeTask (the converters' and the sample world's name for it)
SEQUENCES = FOMO25.sequences  # every sequence FOMO25's tasks read
