"""What one training step sees: a batch drawn from the preprocessed cases.

Every source is a picklable callable `source(draw) -> dict of numpy/torch arrays`, run in background
workers. The `draw` (loader.StepDraw) says which cases this rank reads at this step (the dealt case
stream of case_order: disjoint across ranks, every case once per pass) and holds the RNG of all
other choices, so a step's batch does not depend on worker count or on whether training was resumed.
"""
from __future__ import annotations

import os
from collections import defaultdict

import numpy as np
import torch

from fomo_nn.preprocessing.case_store import PreprocessedCase
from fomo_nn.training.data.loader import StepDraw
from fomo_nn.training.data.patches import centered_lower_corner, crop_with_padding, random_lower_corner


class _Augmenter:
    """Applies a batchgeneratorsv2-style pipeline to one sample (numpy in, torch out)."""

    def __init__(self, pipeline):
        self.pipeline = pipeline

    def __call__(self, image: np.ndarray, seg: np.ndarray | None = None) -> dict:
        sample = {"image": torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))}
        if seg is not None:
            sample["segmentation"] = torch.from_numpy(np.ascontiguousarray(seg, dtype=np.int16))
        if self.pipeline is not None:
            sample = self.pipeline(**sample)
        if "target" not in sample:
            sample["target"] = sample["image"]
        return sample


class PatchSource:
    """Patches from cases, each case once per pass: images (+ masks with foreground oversampling) and
    scalar targets.

    ``read_seg``: crop the case's CASE_seg.b2nd too (segmentation targets; a classification case's
    lesion mask when an auxiliary loss needs it) and transform it with the image; off, masks on disk
    are ignored. Foreground oversampling centres a patch on a mask voxel (cases without any: random).
    """

    def __init__(self, cases: list[PreprocessedCase], read_size, batch_size: int, pipeline=None,
                 foreground_oversampling: float = 0.0, center_crop: bool = False, read_seg: bool = True):
        if not cases:
            raise ValueError("no cases to sample from")
        self.cases = cases
        self.read_size = tuple(int(s) for s in read_size)
        self.batch_size = batch_size
        self.augment = _Augmenter(pipeline)
        self.foreground_oversampling = foreground_oversampling
        self.center_crop = center_crop
        self.read_seg = read_seg

    def _corner(self, case: PreprocessedCase, shape, rng: np.random.Generator) -> np.ndarray:
        if self.center_crop:
            return (np.asarray(shape[-3:]) - np.asarray(self.read_size)) // 2
        if self.foreground_oversampling > 0 and rng.random() < self.foreground_oversampling:
            locations = case.foreground_locations()
            if len(locations):
                return centered_lower_corner(locations[rng.integers(len(locations))], shape, self.read_size)
        return random_lower_corner(shape, self.read_size, rng)

    def sample(self, case: PreprocessedCase, rng: np.random.Generator) -> dict:
        data = case.data()
        lower = self._corner(case, data.shape, rng)
        image = crop_with_padding(data, lower, self.read_size)
        seg = case.seg() if self.read_seg else None
        seg_patch = crop_with_padding(seg, lower, self.read_size) if seg is not None else None
        sample = self.augment(image, seg_patch)
        sample["case_id"] = case.case_id
        sample["label"] = np.float32(np.nan if case.target is None else case.target)
        return sample

    def __call__(self, draw: StepDraw) -> dict:
        picks = draw.cases(len(self.cases), draw.samples(self.batch_size))
        return collate([self.sample(self.cases[i], draw.rng) for i in picks])


class SubjectPairSource:
    """Two scans of one subject (another sequence or session) cropped at the same place in the head.

    Subjects are dealt like cases (each subject once per pass, disjoint across ranks); the two scans
    are drawn at random among the subject's. The crop centre is chosen in image A and mapped through
    world coordinates into image B, then both are augmented with one shared spatial transform
    (stacked as channels), so pixel-wise objectives (cross-reconstruction) and global ones
    (contrastive) both see matching content.
    """

    def __init__(self, cases: list[PreprocessedCase], read_size, batch_size: int, pipeline=None,
                 prefer_same_session: float = 0.5):
        self.read_size = tuple(int(s) for s in read_size)
        self.batch_size = batch_size
        self.augment = _Augmenter(pipeline)
        self.prefer_same_session = prefer_same_session
        by_subject = defaultdict(list)
        for case in cases:
            by_subject[case.subject].append(case)
        self.subjects = sorted(s for s, c in by_subject.items() if len(c) >= 2)
        if not self.subjects:
            raise ValueError("subject-aware sampling needs subjects with at least two scans; none found")
        self.by_subject = {s: by_subject[s] for s in self.subjects}

    def pick_pair(self, subject: str, rng: np.random.Generator) -> tuple[PreprocessedCase, PreprocessedCase]:
        scans = self.by_subject[subject]
        first = scans[rng.integers(len(scans))]
        others = [c for c in scans if c is not first]
        same = [c for c in others if c.session == first.session]
        pool = same if same and rng.random() < self.prefer_same_session else others
        return first, pool[rng.integers(len(pool))]

    def sample(self, subject: str, rng: np.random.Generator) -> dict:
        first, second = self.pick_pair(subject, rng)
        data_a, data_b = first.data(), second.data()
        lower_a = random_lower_corner(data_a.shape, self.read_size, rng)
        centre_world = voxel_to_world(first.properties, lower_a + np.asarray(self.read_size) / 2)
        centre_b = np.round(world_to_voxel(second.properties, centre_world)).astype(int)
        lower_b = centered_lower_corner(centre_b, data_b.shape, self.read_size)
        stacked = np.concatenate([crop_with_padding(data_a, lower_a, self.read_size),
                                  crop_with_padding(data_b, lower_b, self.read_size)])
        sample = self.augment(stacked)
        channels = data_a.shape[0]
        return {"image": sample["image"][:channels], "image_pair": sample["image"][channels:],
                "target": sample["target"][:channels], "target_pair": sample["target"][channels:],
                "subject": first.subject, "same_session": first.session == second.session,
                "case_id": first.case_id, "case_id_pair": second.case_id}

    def __call__(self, draw: StepDraw) -> dict:
        picks = draw.cases(len(self.subjects), draw.samples(self.batch_size))
        return collate([self.sample(self.subjects[i], draw.rng) for i in picks])


def _index_scale(props: dict) -> np.ndarray:
    """Original RAS voxels per preprocessed voxel along each axis."""
    return np.asarray(props["shape_after_crop"], float) / np.asarray(props["shape_after_resampling"], float)


def voxel_to_world(props: dict, index) -> np.ndarray:
    lower = np.asarray([b[0] for b in props["crop_bbox"]], float)
    ras_index = lower + np.asarray(index, float) * _index_scale(props)
    affine = np.asarray(props["image_properties"]["ras_affine"])
    return affine[:3, :3] @ ras_index + affine[:3, 3]


def world_to_voxel(props: dict, world) -> np.ndarray:
    affine = np.asarray(props["image_properties"]["ras_affine"])
    ras_index = np.linalg.solve(affine[:3, :3], np.asarray(world, float) - affine[:3, 3])
    lower = np.asarray([b[0] for b in props["crop_bbox"]], float)
    return (ras_index - lower) / _index_scale(props)


CASE_LOG_VARIABLE = "FOMO_NN_LOG_CASES"


def case_log_requested() -> bool:
    """FOMO_NN_LOG_CASES=1: training_log.jsonl also lists, per epoch and rank, the scans read (to check
    how a corpus is split over ranks; with a big corpus the lines get long)."""
    return os.environ.get(CASE_LOG_VARIABLE, "") == "1"


def batch_case_ids(batch: dict) -> list[str]:
    """The scans a batch was cut from (both scans of every pair)."""
    return [*batch.get("case_id", []), *batch.get("case_id_pair", [])]


def collate(samples: list[dict]) -> dict:
    batch = {}
    for key in samples[0]:
        values = [s[key] for s in samples]
        if isinstance(values[0], torch.Tensor):
            batch[key] = torch.stack(values)
        elif isinstance(values[0], (np.floating, float, bool, np.bool_)):
            batch[key] = torch.as_tensor(np.asarray(values))
        else:
            batch[key] = values
    return batch
