import nibabel as nib
import numpy as np
import pytest

from fomo_nn.evaluation.case_files import find_masks, find_scalars
from fomo_nn.evaluation.masks import check_same_grid, read_mask
from fomo_nn.utils.errors import BadInputError


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _save_mask(path, data, affine=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data.astype(np.uint8), np.eye(4) if affine is None else affine), str(path))


def test_fomo_label_layouts_with_and_without_session_and_task_folder(tmp_path):
    _write(tmp_path / "task" / "labels" / "sub_1" / "ses_1" / "label.txt", "1\n")
    _write(tmp_path / "task" / "labels" / "sub_2" / "label.txt", "0")
    _write(tmp_path / "task" / "preprocessed" / "sub_1" / "ses_1" / "notes.txt", "not a label")
    for root in (tmp_path / "task", tmp_path / "task" / "labels"):
        found = find_scalars(root)
        assert {case: entry.value for case, entry in found.items()} == {"sub_1": 1.0, "sub_2": 0.0}


def test_several_sessions_become_separate_cases(tmp_path):
    _write(tmp_path / "sub_1" / "ses_1" / "label.txt", "61")
    _write(tmp_path / "sub_1" / "ses_2" / "label.txt", "63")
    assert sorted(find_scalars(tmp_path)) == ["sub_1_ses_1", "sub_1_ses_2"]


def test_raw_dataset_and_flat_prediction_layouts(tmp_path):
    _save_mask(tmp_path / "Dataset001_X" / "labelsTr" / "case_a.nii.gz", np.ones((4, 4, 4)))
    _write(tmp_path / "Dataset001_X" / "labelsTr" / "case_a.txt", "42.5")
    assert list(find_masks(tmp_path / "Dataset001_X")) == ["case_a"]
    assert find_scalars(tmp_path / "Dataset001_X")["case_a"].value == 42.5
    _save_mask(tmp_path / "seg" / "sub_3" / "ses_1" / "seg.nii.gz", np.ones((4, 4, 4)))
    assert list(find_masks(tmp_path / "seg")) == ["sub_3"]


def test_predictions_csv_with_probability_columns_and_headerless_csv(tmp_path):
    _write(tmp_path / "pred" / "predictions.csv", "case_id,value,prob_0,prob_1\nsub_1,0.8,0.2,0.8\nsub_2,0.1,0.9,0.1\n")
    assert {c: e.value for c, e in find_scalars(tmp_path / "pred").items()} == {"sub_1": 0.8, "sub_2": 0.1}
    _write(tmp_path / "plain.csv", "sub_1,55\nsub_2,71.5\n")
    assert {c: e.value for c, e in find_scalars(tmp_path / "plain.csv").items()} == {"sub_1": 55.0, "sub_2": 71.5}


def test_a_txt_that_is_not_a_number_names_the_file(tmp_path):
    _write(tmp_path / "sub_1.txt", "0.4")
    _write(tmp_path / "sub_2.txt", "infarct")
    with pytest.raises(BadInputError, match=r"sub_2\.txt: expected one number, found 'infarct'"):
        find_scalars(tmp_path)


def test_csv_value_that_is_not_a_number_names_file_and_line(tmp_path):
    _write(tmp_path / "p.csv", "case_id,value\nsub_1,0.3\nsub_2,high\n")
    with pytest.raises(BadInputError, match=r"p\.csv: line 3: value 'high' is not a number"):
        find_scalars(tmp_path / "p.csv")


def test_mask_spacing_comes_from_the_header_and_grids_must_match(tmp_path):
    affine = np.diag([0.8, 1.0, 3.0, 1.0])
    _save_mask(tmp_path / "ref.nii.gz", np.zeros((6, 6, 6)), affine)
    shifted = affine.copy()
    shifted[0, 3] = 0.5
    _save_mask(tmp_path / "pred.nii.gz", np.zeros((6, 6, 6)), shifted)
    _save_mask(tmp_path / "small.nii.gz", np.zeros((6, 6, 5)), affine)
    reference = read_mask(tmp_path / "ref.nii.gz")
    assert reference.spacing == pytest.approx((0.8, 1.0, 3.0))
    with pytest.raises(BadInputError, match=r"pred\.nii\.gz: affine differs from the reference .*ref\.nii\.gz"):
        check_same_grid(reference, read_mask(tmp_path / "pred.nii.gz"))
    with pytest.raises(BadInputError, match=r"small\.nii\.gz: shape \(6, 6, 5\) differs .*ref\.nii\.gz"):
        check_same_grid(reference, read_mask(tmp_path / "small.nii.gz"))


def test_nrrd_mask_is_read_on_the_same_grid_as_its_nifti_twin(tmp_path):
    import SimpleITK as sitk

    data = np.zeros((5, 6, 7), np.uint8)
    data[1:3, 2:5, 3] = 1
    affine = np.diag([0.8, 1.0, 3.0, 1.0])
    affine[:3, 3] = [10, -20, 5]
    _save_mask(tmp_path / "twin.nii.gz", data, affine)
    sitk.WriteImage(sitk.ReadImage(str(tmp_path / "twin.nii.gz")), str(tmp_path / "twin.nrrd"))
    nifti, nrrd = read_mask(tmp_path / "twin.nii.gz"), read_mask(tmp_path / "twin.nrrd")
    check_same_grid(nifti, nrrd)
    np.testing.assert_array_equal(nifti.foreground, nrrd.foreground)
    assert nrrd.spacing == pytest.approx(nifti.spacing)


def test_classification_reads_the_positive_probability_from_a_predict_csv(tmp_path):
    from fomo_nn.evaluation.scoring import evaluate_classification

    for case, label in (("sub_1", 0), ("sub_2", 1), ("sub_3", 1)):
        _write(tmp_path / "ref" / case / "label.txt", str(label))
    # fomo_nn_predict: `value` is the predicted class, prob_<class name> in class order
    _write(tmp_path / "pred" / "predictions.csv", "case_id,value,prob_healthy,prob_infarct\n"
           "sub_1,1,0.4,0.6\nsub_2,0,0.55,0.45\nsub_3,1,0.1,0.9\n")
    summary = evaluate_classification(tmp_path / "ref", tmp_path / "pred")
    assert [r["probability"] for r in summary.per_case] == [0.6, 0.45, 0.9]
    assert summary.metrics["auroc"] == 0.5  # 0.45 < 0.6 < 0.9: one of two pairs ordered
    negative_side = evaluate_classification(tmp_path / "ref", tmp_path / "pred", positive_class=0)
    assert [r["probability"] for r in negative_side.per_case] == [0.4, 0.55, 0.1]


def test_probability_maps_beside_masks_are_not_cases(tmp_path):
    _save_mask(tmp_path / "case_a.nii.gz", np.ones((4, 4, 4)))
    _save_mask(tmp_path / "case_a_probabilities.nii.gz", np.ones((4, 4, 4)))
    _save_mask(tmp_path / "case_b_probabilities.nii.gz", np.ones((4, 4, 4)))  # no case_b: a case of its own
    assert sorted(find_masks(tmp_path)) == ["case_a", "case_b_probabilities"]
