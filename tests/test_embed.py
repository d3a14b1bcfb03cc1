"""fomo_nn_embed: finite vectors of one length for scans of mixed geometry; bad scans named, others embedded."""
import json
import os

import nibabel as nib
import numpy as np
import pytest
import torch

from builders import affine_for, brain_image, simple_plans, write_nifti
from fomo_nn.cli.embed import main as embed_main
from fomo_nn.plans.records import NetworkPlan, save_plans
from fomo_nn.probing.embedding import embedding_length, load_embedder
from fomo_nn.probing.encoders import random_encoder

TINY = NetworkPlan(features_per_stage=[4, 8, 12], kernel_sizes=[[3, 3, 3]] * 3, strides=[[1, 1, 1], [2, 2, 2], [2, 2, 2]],
                   n_conv_per_stage=[1, 1, 1], n_conv_per_stage_decoder=[1, 1])


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("embed")
    plans = simple_plans(task_type="pretraining", labels=None)
    plans.network, plans.patch_size = TINY, [16, 16, 16]
    plans_path = save_plans(plans, root / "plans.json")
    scans = root / "scans"
    brain = brain_image((36, 32, 28), seed=3)
    write_nifti(scans / "ras.nii.gz", brain, affine_for((1.0, 1.0, 1.0), "RAS"))
    # the same brain stored left-posterior-superior: after RAS reorientation the same array
    write_nifti(scans / "lps.nii.gz", brain[::-1, ::-1, :], affine_for((1.0, 1.0, 1.0), "LPS"))
    write_nifti(scans / "coarse.nii", brain_image((24, 28, 16), seed=4), affine_for((1.5, 1.2, 2.0), "LAS"))
    write_nifti(scans / "big.nii.gz", brain_image((50, 44, 40), seed=5), affine_for((0.8, 0.8, 0.8), "RAS"))
    good = write_nifti(root / "full.nii.gz", brain_image((30, 30, 30), seed=6), affine_for())
    payload = good.read_bytes()
    (scans / "truncated.nii.gz").write_bytes(payload[:len(payload) // 2])
    nib.save(nib.Nifti1Image(np.stack([brain, brain], -1), affine_for()), str(scans / "series.nii.gz"))
    return root, plans, plans_path, scans


def test_folder_of_mixed_geometries_bad_scans_named_and_resume(world, tmp_path, capsys):
    root, plans, plans_path, scans = world
    out = tmp_path / "emb"
    code = embed_main(["-e", "random:0", "--plans", str(plans_path), "-i", str(scans), "-o", str(out)])
    captured = capsys.readouterr()
    assert code == 1
    assert captured.err.count("truncated.nii.gz") == 1 and captured.err.count("series.nii.gz") == 1
    assert "series.nii.gz: expected a 3D image but it is 4D" in captured.err
    assert "truncated.nii.gz: unreadable" in captured.err
    recipe = json.loads((out / "embedding_recipe.json").read_text())
    assert recipe["length"] == embedding_length(random_encoder(plans, 0), "all_stages_avgmax") == 2 * (4 + 8 + 12)
    vectors = {}
    for ptid in ("ras", "lps", "coarse", "big"):
        vector = np.load(out / f"{ptid}.npy")
        assert vector.dtype == np.float32 and vector.shape == (recipe["length"],) and np.isfinite(vector).all()
        vectors[ptid] = vector
    assert not (out / "truncated.npy").exists() and not (out / "series.npy").exists()
    assert not [p for p in os.listdir(out) if p.startswith(".")]  # no temporaries left
    # orientation does not change the embedding; different brains give different embeddings
    np.testing.assert_allclose(vectors["lps"], vectors["ras"], rtol=1e-5, atol=1e-6)
    assert np.abs(vectors["big"] - vectors["ras"]).max() > 1e-3
    # rerun: nothing recomputed, the same failures reported
    stamps = {p: (out / f"{p}.npy").stat().st_mtime_ns for p in vectors}
    assert embed_main(["-e", "random:0", "--plans", str(plans_path), "-i", str(scans), "-o", str(out)]) == 1
    assert "4 already there" in capsys.readouterr().out
    assert stamps == {p: (out / f"{p}.npy").stat().st_mtime_ns for p in vectors}
    # another recipe into the same folder is refused
    assert embed_main(["-e", "random:1", "--plans", str(plans_path), "-i", str(scans), "-o", str(out)]) == 2
    assert "another recipe" in capsys.readouterr().err


def test_checkpoint_csv_and_single_scan_give_the_same_vectors(world, tmp_path):
    root, plans, plans_path, scans = world
    frozen = random_encoder(plans, 0)
    checkpoint = tmp_path / "encoder.pt"
    torch.save({"format": "fomo_nn_encoder", "encoder": {f"encoder.{k}": v for k, v in frozen.encoder.state_dict().items()},
                "plans": plans.to_json()}, checkpoint)
    csv_path = tmp_path / "subjects.csv"
    csv_path.write_text(f"ptid,nifti_path\nsubA,{scans / 'ras.nii.gz'}\nsubB,{scans / 'coarse.nii'}\n")
    assert embed_main(["-e", str(checkpoint), "-i", str(csv_path), "-o", str(tmp_path / "ck")]) == 0
    assert embed_main(["-e", "random:0", "--plans", str(plans_path), "-i", str(csv_path), "-o", str(tmp_path / "rd")]) == 0
    for ptid in ("subA", "subB"):
        np.testing.assert_allclose(np.load(tmp_path / "ck" / f"{ptid}.npy"), np.load(tmp_path / "rd" / f"{ptid}.npy"),
                                   rtol=1e-6, atol=1e-7)
    single = tmp_path / "one" / "scan.npy"
    assert embed_main(["-e", str(checkpoint), "-i", str(scans / "ras.nii.gz"), "-o", str(single), "--no-recipe",
                       "--stages", "bottleneck"]) == 0
    vector = np.load(single)
    assert vector.shape == (12,) and np.isfinite(vector).all() and not single.with_suffix(".recipe.json").exists()


def test_whole_brain_windows_differ_from_one_centre_crop(world):
    """The sliding window sees the whole brain: a change far from the centre moves the embedding."""
    root, plans, plans_path, scans = world
    embedder = load_embedder("random:0", plans)
    from fomo_nn.probing.embedding import embed_volume
    volume = brain_image((48, 48, 48), seed=1)[None] / 400.0
    base = embed_volume(embedder, volume)
    edited = volume.copy()
    edited[:, 4:12, 20:28, 20:28] *= 3.0  # outside a 16^3 centre crop
    assert np.abs(embed_volume(embedder, edited) - base).max() > 1e-4
