"""One embedding per scan (FOMO26 tasks 6 and 7): the whole brain, as the encoder's plans preprocess it.

The organisers' template (asparagus `scripts/FOMO26/Task6_and_7_predict.py` @ 338450b) centre-crops the
scan to the pretraining patch and flattens the deepest features of that one crop: whatever lies outside
the crop is never seen, and the crop's content depends on the field of view. Here the scan is read in RAS,
cropped to its nonzero box, normalized and resampled as the encoder's plans (or the checkpoint's expected
preprocessing) say, then tiled by the sliding window at the pretraining patch (fomo_nn.inference.
sliding_window, step 0.5, all-background tiles skipped). Each tile's stage features are pooled
(``stages``: the bottleneck, every stage, or every stage's average and maximum, as fomo_nn's probes), and
the tiles are averaged weighted by their share of brain (nonzero) voxels, so a tile mostly outside the
head counts little. The length is fixed by the encoder and the pooling (`EmbeddingRecipe.length`).
Default: every stage's average and maximum. Measured with random encoders (benchmarks/RESULTS.md, issue 23):
on the sample world's probing cohort the organisers' probe reached test AUROC 0.85 against 0.74 with every
stage's average and 0.55 with the bottleneck alone; on scans with an off-centre lesion, whole-brain windows
reached 0.96 against 0.71 for the centre crop (on the cohort, whose findings are central, the crop does as well).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from fomo_nn.checkpoints.registry import read_checkpoint
from fomo_nn.inference.case_loading import read_case
from fomo_nn.inference.sliding_window import pad_to_patch, sliding_window_tiles, tile
from fomo_nn.utils.errors import BadInputError
from fomo_nn.plans import Plans
from fomo_nn.plans.records import NormalizationPlan
from fomo_nn.preprocessing.case_preprocessing import preprocess_loaded
from fomo_nn.probing.encoders import RANDOM, FrozenEncoder, load_frozen_encoder
from fomo_nn.probing.features import POOLINGS, pool_stages

STAGE_POOLINGS = POOLINGS  # bottleneck | all_stages | all_stages_avgmax
WINDOW_POOLINGS = ("brain_weighted", "mean")
RECIPE_VERSION = 1


@dataclass(frozen=True)
class ScanPreprocessing:
    """What `preprocess_loaded` reads from plans, for one single-sequence scan."""

    normalization: list[NormalizationPlan]
    target_spacing: list[float]
    channel_names: tuple[str, ...] = ("scan",)


@dataclass(frozen=True)
class EmbeddingRecipe:
    """Everything that decides an embedding's values; written beside the output and compared on a rerun."""

    encoder: str
    encoder_format: str
    length: int
    stages: str
    windows: str
    patch_size: list[int]
    step: float
    spacing: list[float]
    normalization: dict
    orientation: str = "RAS"
    recipe_version: int = RECIPE_VERSION

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class Embedder:
    frozen: FrozenEncoder
    preprocessing: ScanPreprocessing
    recipe: EmbeddingRecipe


class PooledStages(nn.Module):
    """An encoder whose output is its stage features pooled over space: (B, length) per tile batch."""

    def __init__(self, encoder: nn.Module, stages: str):
        super().__init__()
        self.encoder, self.stages = encoder, stages

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pool_stages(self.encoder(x), self.stages).float()


def embedding_length(frozen: FrozenEncoder, stages: str) -> int:
    channels = frozen.stage_channels
    chosen = channels[-1:] if stages == "bottleneck" else channels
    return int(sum(chosen)) * (2 if stages == "all_stages_avgmax" else 1)


def _single_normalization(normalization, where) -> NormalizationPlan:
    if not normalization:
        raise BadInputError(where, "records no intensity normalization; pass --plans PLANS.json to say how "
                                   "scans are preprocessed for it")
    first = normalization[0]
    if any(n != first for n in normalization[1:]):
        raise BadInputError(where, f"normalizes its {len(normalization)} channels differently "
                                   f"({[n.scheme for n in normalization]}); one scan has one channel")
    return first


def load_embedder(source: str, plans: Plans | None = None, stages: str = "all_stages_avgmax",
                  windows: str = "brain_weighted", step: float = 0.5, trust_pickle: bool = False) -> Embedder:
    """The encoder of `source` (any checkpoint fomo_nn reads, or random[:SEED] with `plans`) and its recipe.

    Spacing, patch and normalization come from `plans` when given, else from the checkpoint (its plans,
    or the preprocessing its format records).
    """
    if stages not in STAGE_POOLINGS or windows not in WINDOW_POOLINGS:
        raise ValueError(f"stages must be one of {STAGE_POOLINGS} and windows one of {WINDOW_POOLINGS}")
    if not 0 < step <= 1:
        raise ValueError(f"step must be in (0, 1], got {step}")
    if source == RANDOM or source.startswith(f"{RANDOM}:"):
        if plans is None:
            raise ValueError("a random encoder needs --plans to know its topology and preprocessing")
        frozen, form = load_frozen_encoder(source, plans), "random"
        spacing, patch, normalization, where = plans.target_spacing, plans.patch_size, plans.normalization, source
    else:
        record = read_checkpoint(source, trust_pickle=trust_pickle)
        frozen, form, where = load_frozen_encoder(source, trust_pickle=trust_pickle), record.format, record.path
        known = plans or record.plans
        spacing = known.target_spacing if known else record.preprocessing.spacing
        patch = known.patch_size if known else record.preprocessing.patch_size
        normalization = known.normalization if known else record.preprocessing.normalization
        if spacing is None or patch is None:
            raise BadInputError(where, "records no target spacing or patch size; pass --plans PLANS.json")
    if frozen.in_channels != 1:
        raise BadInputError(where, f"its encoder's stem takes {frozen.in_channels} channels; an embedding is made "
                                   "from one scan (use a single-channel encoder)")
    norm = _single_normalization(normalization, where)
    recipe = EmbeddingRecipe(encoder=str(source), encoder_format=form, length=embedding_length(frozen, stages),
                             stages=stages, windows=windows, patch_size=[int(p) for p in patch], step=float(step),
                             spacing=[float(s) for s in spacing], normalization=dataclasses.asdict(norm))
    return Embedder(frozen, ScanPreprocessing([norm], [float(s) for s in spacing]), recipe)


def brain_fractions(data: torch.Tensor, corners, patch) -> torch.Tensor:
    """Share of nonzero voxels (any channel) in each tile of the patch-padded volume."""
    volume, _ = pad_to_patch(data, patch)
    inside = (volume != 0).any(dim=0, keepdim=True)
    return torch.tensor([float(tile(inside, c, patch).float().mean()) for c in corners], dtype=torch.float64)


@torch.no_grad()
def embed_volume(embedder: Embedder, data: np.ndarray, device: str | torch.device = "cpu") -> np.ndarray:
    """(1, X, Y, Z) preprocessed volume -> (length,) float32 embedding."""
    recipe = embedder.recipe
    network = PooledStages(embedder.frozen.encoder, recipe.stages).to(device).eval()
    outputs, corners = sliding_window_tiles(network, data, recipe.patch_size, step=recipe.step, device=device,
                                            skip_empty=True)
    weights = torch.ones(len(corners), dtype=torch.float64)
    if recipe.windows == "brain_weighted":
        fractions = brain_fractions(torch.as_tensor(np.asarray(data, dtype=np.float32)), corners, recipe.patch_size)
        weights = fractions if float(fractions.sum()) > 0 else weights
    vector = (outputs.double() * weights[:, None]).sum(0) / weights.sum()
    return vector.float().numpy()


def embed_scan(embedder: Embedder, image_file: str | Path, device: str | torch.device = "cpu") -> np.ndarray:
    """A scan file -> its embedding; BadInputError naming the file for unreadable, 4D or empty input."""
    loaded = read_case([str(image_file)]).loaded
    try:
        data, _, _ = preprocess_loaded(loaded, embedder.preprocessing)
    except ValueError as error:
        if isinstance(error, BadInputError):
            raise
        raise BadInputError(image_file, str(error)) from None
    vector = embed_volume(embedder, data, device)
    if vector.shape != (embedder.recipe.length,) or not np.isfinite(vector).all():
        raise BadInputError(image_file, f"its embedding is not {embedder.recipe.length} finite values")
    return vector
