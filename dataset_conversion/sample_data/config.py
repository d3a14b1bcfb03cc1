"""How much synthetic FOMO-like data to generate: grid size and case counts per size preset."""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace

# FOMO25 task 1 finetuning set: 13 infarct cases and 8 controls.
INFARCT_POSITIVE_RATIO = 13 / 21
# FOMO60K has 11,187 subjects against 21 / 23 / 200 labelled finetuning cases (56x the largest task): every
# preset keeps the unlabelled corpus at least 10x the largest finetuning set, counted in subjects.
CORPUS_TO_FINETUNE_SUBJECTS = 10
SPLITS = ("finetune", "test")
TASKS = (1, 2, 3)


@dataclass(frozen=True)
class SampleDataConfig:
    """Grid and counts; every number here is a knob tests and the demo may turn.

    The anatomy is built on a RAS grid of `grid_shape` voxels of `voxel_mm` (isotropic); each
    simulated site then resamples it to its own spacing, orientation and field of view.
    """

    size: str
    grid_shape: tuple[int, int, int]
    voxel_mm: float
    pretraining_subjects: int
    task1_finetune: int
    task1_test: int
    task2_finetune: int
    task2_test: int
    task3_finetune: int
    task3_test: int

    def __post_init__(self):
        if len(self.grid_shape) != 3 or min(self.grid_shape) < 16:
            raise ValueError(f"grid_shape must be three sizes >= 16 voxels, got {self.grid_shape}")
        if not 0.5 <= self.voxel_mm <= 8.0:
            raise ValueError(f"voxel_mm must lie in [0.5, 8] mm, got {self.voxel_mm}")
        extent = [n * self.voxel_mm for n in self.grid_shape]
        if min(extent) < 150 or extent[1] < 185:
            raise ValueError(f"the anatomy grid covers {extent} mm; a brain needs at least 150 x 185 x 150 mm")
        for name in ("pretraining_subjects", "task1_finetune", "task1_test", "task2_finetune", "task2_test",
                     "task3_finetune", "task3_test"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        for name in ("task1_finetune", "task1_test"):
            count = getattr(self, name)
            if count == 1:
                raise ValueError(f"{name} must be 0 or at least 2 (task 1 needs positives and negatives)")

    def case_count(self, split: str, task: int) -> int:
        return int(getattr(self, f"task{task}_{split}"))

    def positives(self, split: str) -> int:
        """Infarct-positive cases in a task 1 split, keeping FOMO's 13:8 ratio (both classes present)."""
        count = self.case_count(split, 1)
        if count == 0:
            return 0
        return min(count - 1, max(1, round(count * INFARCT_POSITIVE_RATIO)))

    def to_dict(self) -> dict:
        data = asdict(self)
        data["grid_shape"] = list(self.grid_shape)
        return data

    def largest_finetune_set(self) -> int:
        return max(self.case_count("finetune", task) for task in TASKS)


SIZE_PRESETS: dict[str, SampleDataConfig] = {
    # Unit tests: a few seconds on one core (the corpus is the one preset below the 10x rule: 36 vs 16).
    "tiny": SampleDataConfig("tiny", (32, 40, 32), 5.0, 36, 10, 8, 8, 6, 16, 12),
    # The demo on a 2-core CPU: about a minute, ~3 mm voxels; 600 corpus subjects = 10x task 3's 60.
    "small": SampleDataConfig("small", (54, 64, 54), 3.0, 600, 21, 40, 23, 30, 60, 60),
    "medium": SampleDataConfig("medium", (80, 96, 80), 2.0, 1200, 21, 80, 23, 60, 120, 120),
    # Real 1 mm brains with the FOMO25 case counts (hours and tens of GB).
    "full": SampleDataConfig("full", (160, 192, 160), 1.0, 2000, 21, 320, 23, 107, 200, 800),
}


# Test-set sizes (--test-size): "preset" keeps the size preset's counts (what the demo's numbers rest on);
# "fomo" gives FOMO25's test-set sizes (task 1: 320, task 2: 107, task 3: 800 cases), large enough to resolve
# margins of ~0.05 AUROC between two models (benchmarks/compute_ladder.py); the test sites are the same.
TEST_SIZES = {"preset": {}, "fomo": {"task1_test": 320, "task2_test": 107, "task3_test": 800}}


def with_test_size(config: SampleDataConfig, test_size: str) -> SampleDataConfig:
    """`config` with the test-set counts of `test_size` (TEST_SIZES); "preset" returns it unchanged."""
    if test_size not in TEST_SIZES:
        raise ValueError(f"unknown test size {test_size!r}; choose one of {', '.join(TEST_SIZES)}")
    return replace(config, **TEST_SIZES[test_size]) if TEST_SIZES[test_size] else config


def config_for_size(size: str, **overrides) -> SampleDataConfig:
    """The preset for `size`, with any field replaced by `overrides` (e.g. task3_finetune=30)."""
    if size not in SIZE_PRESETS:
        raise ValueError(f"unknown sample data size {size!r}; choose one of {', '.join(SIZE_PRESETS)}")
    config = SIZE_PRESETS[size]
    if overrides:
        if "grid_shape" in overrides:
            overrides["grid_shape"] = tuple(int(n) for n in overrides["grid_shape"])
        config = replace(config, **overrides)
    return config
