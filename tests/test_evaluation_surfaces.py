"""NSD against the reference implementation, DeepMind's surface-distance 0.1 (a test-only dependency)."""
import numpy as np
import pytest
import surface_distance
from scipy import ndimage
from surface_distance import lookup_tables

from fomo_nn.evaluation.metrics import normalized_surface_distance
from fomo_nn.evaluation.surfaces import neighbourhood_codes, surface_distances, surfel_area_table

# the reference imports scipy.ndimage.filters / .morphology, deprecated namespaces
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

AGREEMENT = 1e-3
SPACINGS = [(1.0, 1.0, 1.0), (0.5, 0.5, 5.0), (1.2, 0.9, 3.0)]


@pytest.fixture
def reference_on_numpy2(monkeypatch):
    """surface-distance 0.1 predates NumPy 2: it writes np.Inf where one mask is empty."""
    monkeypatch.setattr(np, "Inf", np.inf, raising=False)


def reference_nsd(reference, prediction, spacing, tolerance_mm) -> float:
    distances = surface_distance.compute_surface_distances(reference, prediction, spacing)
    with np.errstate(invalid="ignore"):  # two empty masks: 0 / 0
        return float(surface_distance.compute_surface_dice_at_tolerance(distances, tolerance_mm))


def _blob_pair(seed: int, spacing) -> tuple[np.ndarray, np.ndarray]:
    """A smooth random blob about 20 mm across and a perturbed copy: a reference and a plausible prediction."""
    rng = np.random.default_rng(seed)
    shape = tuple(int(round(48 / s)) for s in spacing)
    sigma = np.array([4.0 / s for s in spacing])
    field = ndimage.gaussian_filter(rng.normal(size=shape), sigma)
    reference = field > 0.8 * field.std()
    noise = ndimage.gaussian_filter(rng.normal(size=shape), sigma / 2)
    prediction = ndimage.gaussian_filter(reference.astype(float), sigma / 3) + 0.3 * noise / noise.std() > 0.5
    return reference, prediction


def test_surfel_areas_equal_the_reference_table_for_all_codes():
    rng = np.random.default_rng(0)
    for spacing in SPACINGS + [tuple(rng.uniform(0.2, 6.0, 3)) for _ in range(20)]:
        expected = lookup_tables.create_table_neighbour_code_to_surface_area(spacing)
        np.testing.assert_allclose(surfel_area_table(spacing), expected, rtol=0, atol=1e-12)


def test_surfel_areas_of_a_box_by_hand():
    """Face points: a flat square; edge points: a bevel s_i x |(s_j, s_k)| / 2; corners: a triangle."""
    sides, spacing = np.array([4, 6, 3]), np.array([0.7, 1.3, 2.5])
    mask = np.zeros(sides + 4, bool)
    mask[2:2 + sides[0], 2:2 + sides[1], 2:2 + sides[2]] = True
    expected = 0.0
    for i, j, k in ((0, 1, 2), (1, 2, 0), (2, 0, 1)):
        expected += 2 * (sides[j] - 1) * (sides[k] - 1) * spacing[j] * spacing[k]
        expected += 4 * (sides[i] - 1) * spacing[i] * np.hypot(spacing[j], spacing[k]) / 2
    expected += np.sqrt(((spacing[1] * spacing[2]) ** 2 + (spacing[0] * spacing[2]) ** 2
                         + (spacing[0] * spacing[1]) ** 2))
    surfaces = surface_distances(mask, mask, spacing)
    assert surfaces.reference_areas.sum() == pytest.approx(expected)
    assert not surfaces.reference_to_prediction.any()


def test_codes_treat_outside_the_array_as_empty():
    codes = neighbourhood_codes(np.ones((1, 1, 1), bool))
    assert codes.shape == (2, 2, 2)
    assert sorted(codes.ravel().tolist()) == [1 << bit for bit in range(8)]  # each corner sees the voxel once


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("spacing", SPACINGS)
def test_nsd_of_random_blobs_agrees_with_the_reference(seed, spacing):
    reference, prediction = _blob_pair(seed, spacing)
    assert reference.any() and prediction.any() and (reference != prediction).any()
    for tolerance in (1.0, 2.0):
        ours = normalized_surface_distance(reference, prediction, spacing, tolerance)
        assert abs(ours - reference_nsd(reference, prediction, spacing, tolerance)) < AGREEMENT
        assert 0.3 < ours < 0.99  # neither trivial nor perfect: the tolerance matters


@pytest.mark.parametrize("spacing", SPACINGS)
def test_nsd_of_voxel_noise_agrees_with_the_reference(spacing):
    """Independent random voxels produce every neighbourhood code, ambiguous ones included."""
    rng = np.random.default_rng(7)
    reference, prediction = rng.random((14, 15, 9)) < 0.5, rng.random((14, 15, 9)) < 0.4
    assert np.unique(neighbourhood_codes(reference)).size == 256
    for tolerance in (0.0, 0.5, 1.0, 2.0):
        ours = normalized_surface_distance(reference, prediction, spacing, tolerance)
        assert abs(ours - reference_nsd(reference, prediction, spacing, tolerance)) < AGREEMENT


def _edge_cases():
    empty = np.zeros((12, 10, 8), bool)
    full = np.ones_like(empty)  # touches every border of the array
    voxel = empty.copy()
    voxel[5, 5, 4] = True
    sheet = empty.copy()
    sheet[2:10, 4, 1:7] = True  # one voxel thick
    line = empty.copy()
    line[3, 1:9, 2] = True
    corner = empty.copy()
    corner[:3, :3, :3] = True  # in the array's corner
    far = empty.copy()
    far[-2:, -2:, -2:] = True
    return {"full vs corner": (full, corner), "voxel vs sheet": (voxel, sheet), "line vs sheet": (line, sheet),
            "corner vs far": (corner, far), "same sheet": (sheet, sheet), "voxel vs full": (voxel, full)}


@pytest.mark.parametrize("name", sorted(_edge_cases()))
@pytest.mark.parametrize("spacing", SPACINGS)
def test_nsd_edge_cases_agree_with_the_reference(name, spacing):
    reference, prediction = _edge_cases()[name]
    for tolerance in (0.0, 1.0, 2.0, 10.0):
        ours = normalized_surface_distance(reference, prediction, spacing, tolerance)
        assert abs(ours - reference_nsd(reference, prediction, spacing, tolerance)) < AGREEMENT


def test_empty_masks_follow_the_reference_and_the_empty_pair_policy(reference_on_numpy2):
    empty = np.zeros((6, 6, 6), bool)
    blob = empty.copy()
    blob[1:4, 2:5, 1:3] = True
    for first, second in ((blob, empty), (empty, blob)):  # one empty: nothing of the surface is close
        ours = normalized_surface_distance(first, second, (1, 1, 2), 2.0)
        assert ours == reference_nsd(first, second, (1, 1, 2), 2.0) == 0
    assert np.isnan(reference_nsd(empty, empty, (1, 1, 2), 2.0))  # the reference: 0 / 0
    assert np.isnan(normalized_surface_distance(empty, empty, (1, 1, 2), 2.0, empty_pair="exclude"))
    assert normalized_surface_distance(empty, empty, (1, 1, 2), 2.0) == 1.0  # fomo_nn's default, "score"


def test_cropping_to_the_union_changes_nothing_on_a_whole_brain_grid():
    reference, prediction = _blob_pair(3, (1.0, 1.0, 1.0))
    brain = np.zeros((182, 218, 182), bool), np.zeros((182, 218, 182), bool)
    for small, large in zip((reference, prediction), brain):
        large[60:60 + small.shape[0], 80:80 + small.shape[1], 70:70 + small.shape[2]] = small
    assert normalized_surface_distance(*brain, (1, 1, 1), 1.0) == pytest.approx(
        normalized_surface_distance(reference, prediction, (1, 1, 1), 1.0), abs=1e-12)
