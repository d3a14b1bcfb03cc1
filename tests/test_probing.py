"""Probes and probe-initialised heads: standardised features, LP-FT exactness, layer-wise LR, online probe."""
import json

import numpy as np
import pytest
import torch

from fomo_nn.networks.heads import FeatureStandardizer
from fomo_nn.plans import load_plans
from fomo_nn.probing import extract_features, fit_probe, load_frozen_encoder
from fomo_nn.probing.features import pad_to_multiple, pool_stages
from fomo_nn.probing.linear_probes import cross_validated_scores, probe_scores
from fomo_nn.training.base_trainer import TrainerOptions
from fomo_nn.training.registry import get_trainer
from preprocessed_builders import build_preprocessed


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    root = tmp_path_factory.mktemp("probing")
    return {"classification": build_preprocessed(root / "cls", "classification", num_cases=16, shape=(32, 32, 32)),
            "regression": build_preprocessed(root / "reg", "regression", num_cases=16, shape=(32, 32, 32)),
            "pretraining": build_preprocessed(root / "pre", "pretraining", num_cases=8, shape=(32, 32, 32))}


def test_feature_standardizer_is_identity_until_fitted_then_standardises():
    standardizer = FeatureStandardizer(3)
    x = torch.tensor([[1.0, 100.0, 5.0], [3.0, 101.0, 5.0], [5.0, 102.0, 5.0]])
    torch.testing.assert_close(standardizer(x), x)
    standardizer.fit(x)
    z = standardizer(x)
    torch.testing.assert_close(z[:, :2].mean(0), torch.zeros(2), atol=1e-6, rtol=0)
    torch.testing.assert_close(z[:, :2].std(0, unbiased=False), torch.ones(2))
    assert torch.isfinite(z[:, 2]).all() and float(z[:, 2].abs().max()) == 0.0  # a constant feature stays 0
    assert set(dict(standardizer.named_buffers())) == {"mean", "std"} and not list(standardizer.parameters())
    with pytest.raises(ValueError, match="statistics of 3 features"):
        standardizer.set_statistics(torch.zeros(2), torch.ones(2))


@pytest.mark.parametrize("task", ["regression", "classification"])
def test_head_starts_as_the_scikit_learn_probe_of_the_same_features(task, datasets, tmp_path):
    data = datasets[task]
    trainer = get_trainer(task)(load_plans(data), data, tmp_path, "0", TrainerOptions(epochs=1))
    trainer.setup()
    features, targets, cases = trainer.training_features()
    assert len(np.unique(cases)) == len(trainer.train_cases) and np.all(np.bincount(cases) == 4)
    expected = fit_probe(task, "linear", features.double().numpy(), trainer.probe_targets(targets), trainer.seed,
                         groups=cases)
    with torch.no_grad():
        outputs = trainer.network.head(features)
    if task == "regression":
        np.testing.assert_allclose(outputs[:, 0].numpy(), expected.predict(features.double().numpy()), atol=1e-4)
    else:
        np.testing.assert_allclose(torch.softmax(outputs, 1)[:, 1].numpy(),
                                   probe_scores(expected, task, features.double().numpy()), atol=1e-4)
    # the probe fits its training patches: far better than the mean (regression) or chance (classification)
    if task == "regression":
        fitted = outputs[:, 0].numpy()
        normalized = trainer.probe_targets(targets)
        assert np.mean((fitted - normalized) ** 2) < 0.5 * np.var(normalized)
    else:
        assert float(((outputs[:, 1] > outputs[:, 0]).numpy() == (targets == 1)).mean()) > 0.8


def test_random_head_init_still_standardises(datasets, tmp_path):
    data = datasets["regression"]
    trainer = get_trainer("regression")(load_plans(data), data, tmp_path, "0",
                                        TrainerOptions(epochs=1, method={"head_init": "random"}))
    trainer.setup()
    features, _, _ = trainer.training_features()
    z = trainer.network.head.standardizer(features)
    torch.testing.assert_close(z.mean(0), torch.zeros(z.shape[1]), atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="head_init"):
        get_trainer("regression")(load_plans(data), data, tmp_path / "x", "0",
                                  TrainerOptions(method={"head_init": "closed"})).setup()


def test_layer_wise_lr_decay_orders_encoder_stages(datasets, tmp_path):
    data = datasets["regression"]
    trainer = get_trainer("regression")(load_plans(data), data, tmp_path, "0", TrainerOptions(
        learning_rate=1e-3, training={"encoder_lr_scale": 0.5, "layer_lr_decay": 0.5}))
    trainer.setup()
    groups = {g["name"]: g for g in trainer.optimizer.param_groups}
    assert groups["head"]["lr"] == pytest.approx(1e-3)
    stages = trainer.network.network_plan.num_stages
    for depth in range(stages):  # deepest stage 0.5 x 1e-3, each shallower stage half of that
        assert groups[f"encoder_depth_{depth}"]["lr"] == pytest.approx(1e-3 * 0.5 * 0.5 ** depth)
    stem = trainer.network.encoder.stages[0]
    assert all(any(p is q for q in groups[f"encoder_depth_{stages - 1}"]["params"]) for p in stem.parameters())
    assert sum(len(g["params"]) for g in trainer.optimizer.param_groups) == len(list(trainer.network.parameters()))


def test_frozen_encoder_features_and_modes(datasets):
    plans = load_plans(datasets["classification"])
    frozen = load_frozen_encoder("random:3", plans)
    again = load_frozen_encoder("random:3", plans)
    volume = np.random.default_rng(0).normal(size=(2, 30, 28, 26)).astype(np.float32)
    per_sequence = extract_features(frozen, [volume], "per_sequence")
    width = sum(frozen.stage_channels)
    assert per_sequence.shape == (1, 2 * width)
    np.testing.assert_array_equal(per_sequence, extract_features(again, [volume], "per_sequence"))  # seeded
    mean = extract_features(frozen, [volume], "sequence_mean")
    np.testing.assert_allclose(mean[0], per_sequence[0].reshape(2, width).mean(0), rtol=1e-6)
    # stem expansion (stem weights / C over C channels) equals the encoder on the channels' mean
    expanded = extract_features(frozen, [volume], "stem_expansion")
    np.testing.assert_allclose(expanded, extract_features(frozen, [volume.mean(0, keepdims=True)]), rtol=1e-5)
    assert pad_to_multiple(torch.zeros(1, 1, 30, 28, 26), [4, 4, 4]).shape[2:] == (32, 28, 28)
    stages = [torch.ones(1, 2, 4, 4, 4), torch.zeros(1, 3, 2, 2, 2)]
    stages[1][0, 0, 0, 0, 0] = 8.0
    assert pool_stages(stages, "all_stages_avgmax").tolist()[0] == [1, 1, 1, 0, 0, 1, 1, 8, 0, 0]
    with pytest.raises(ValueError, match="random:SEED"):
        load_frozen_encoder("random:x", plans)


def test_probe_models_learn_a_linear_signal_and_cross_validate():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(40, 6))
    values = 3 * features[:, 0] - features[:, 1] + 0.1 * rng.normal(size=40)
    labels = (values > 0).astype(int)
    for model in ("linear", "knn"):
        scores = cross_validated_scores("regression", model, features, values)
        assert np.corrcoef(scores, values)[0, 1] > (0.95 if model == "linear" else 0.6)
        probabilities = cross_validated_scores("classification", model, features, labels)
        assert np.mean((probabilities > 0.5) == labels) > (0.85 if model == "linear" else 0.7)
    with pytest.raises(ValueError, match="two classes"):
        fit_probe("classification", "linear", features, np.zeros(40))


def test_online_probe_logs_a_curve_from_before_the_first_step(datasets, tmp_path, monkeypatch):
    monkeypatch.setenv("fomo_nn_preprocessed", str(datasets["regression"].parent))
    data = datasets["pretraining"]
    trainer = get_trainer("mae")(load_plans(data), data, tmp_path, "all", TrainerOptions(
        epochs=2, iterations_per_epoch=1, validation_iterations=1, probe_datasets=["900"], probe_every=1))
    trainer.run()
    rows = [json.loads(line) for line in (tmp_path / "online_probe.jsonl").read_text().splitlines()]
    assert [r["epochs_done"] for r in rows] == [0, 1, 2] and [r["step"] for r in rows] == [0, 1, 2]
    assert all(np.isfinite(r["probe_Dataset900_Tiny_mae"]) and -1 <= r["probe_Dataset900_Tiny_pearson_r"] <= 1
               for r in rows)
    assert rows[1]["probe_Dataset900_Tiny_mae"] != rows[0]["probe_Dataset900_Tiny_mae"]  # training moved the features
    assert (tmp_path / "progress.png").stat().st_size > 0


def test_grouped_penalty_choice_does_not_memorise_repeated_patches():
    rng = np.random.default_rng(1)
    case_features = rng.normal(size=(20, 30))
    noise_targets = rng.normal(size=20)  # nothing to learn
    features = np.repeat(case_features, 4, axis=0) + 0.01 * rng.normal(size=(80, 30))
    targets, cases = np.repeat(noise_targets, 4), np.repeat(np.arange(20), 4)
    naive = fit_probe("regression", "linear", features, targets)[-1].alpha_
    grouped = fit_probe("regression", "linear", features, targets, groups=cases)[-1].alpha_
    assert grouped > 100 * naive  # leave-one-patch-out sees the patch's siblings and picks no penalty
