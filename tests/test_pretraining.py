"""Self-supervised pretraining: every method learns, resumes exactly, and hands its encoder to finetuning."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from fomo_nn.cli.export_encoder import export_encoder
from fomo_nn.cli.export_encoder import main as export_main
from fomo_nn.utils.errors import BadInputError
from fomo_nn.networks import build_finetuning_network, build_from_record, load_encoder_weights, stem_weight_keys
from fomo_nn.plans import Plans, load_plans, save_plans
from fomo_nn.preprocessing.case_store import PreprocessedCase, write_case
from fomo_nn.training.base_trainer import TrainerOptions
from fomo_nn.checkpoints.training_state import load_checkpoint, save_checkpoint
from fomo_nn.training.data.loader import StepDraw, make_loader
from fomo_nn.training.pretraining.base import ADAPTATION_RECORD_KEY
from fomo_nn.training.progress_log import ProgressLog
from fomo_nn.training.pretraining.dino import teacher_momentum_at
from fomo_nn.training.pretraining.losses import batch_standardize, gaussian_kl, group_codes, nt_xent
from fomo_nn.training.pretraining.masking import random_token_mask, voxel_mask
from fomo_nn.training.pretraining.provenance import data_provenance
from fomo_nn.training.pretraining.subject_split import split_by_subject
from fomo_nn.training.pretraining.vae import kl_ramp
from fomo_nn.training.registry import all_trainers, get_trainer
from preprocessed_builders import build_preprocessed, cases_of

METHODS = ("mae", "contrastive", "hybrid", "vae", "dino")
# tiny heads so a CPU step takes milliseconds; everything else is the methods' defaults
SMALL = {"mae": {"token_size": 4},
         "contrastive": {"projection_hidden": 32, "projection_dim": 16},
         "hybrid": {"token_size": 4, "projection_hidden": 32, "projection_dim": 16},
         "vae": {"token_size": 4, "subject_channels": 8, "kl_ramp_epochs": 2},
         "dino": {"projection_hidden": 32, "projection_dim": 16, "prototypes": 32, "num_local_crops": 2,
                  "ibot_weight": 0.5}}
BATCH = {"hybrid": 2, "vae": 2}  # pair methods forward 2 x batch scans
EPOCHS, ITERATIONS = 3, 4
CRASH_STEP = 5  # mid epoch 2: the latest checkpoint is the one after epoch 1
RUN_OPTIONS = dict(epochs=EPOCHS, iterations_per_epoch=ITERATIONS, validation_iterations=2, batch_size=4,
                   learning_rate=3e-3, num_workers=0, checkpoint_every=1, training={"schedule": "constant"})


@pytest.fixture(scope="module", autouse=True)
def fast_cpu_runs():
    """One intra-op thread: 32^3 convolutions of a tiny net gain nothing from a second one, and on shared
    cores OpenMP's spin-waiting made this file ~10x slower. progress.png is tested with the base
    trainer; drawing it for every epoch here would double the runtime."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ProgressLog, "plot", lambda self: None)
        yield
    torch.set_num_threads(threads)


def instrumented(cls, crash_at: int | None = None):
    """The trainer class, recording per-step losses and initial weights, optionally killed at a step."""

    class Instrumented(cls):
        def initialize_weights(self):
            super().initialize_weights()
            self.initial_state = {k: v.detach().clone() for k, v in self.network.state_dict().items()}
            self.step_losses = []

        def train_step(self, batch, step):
            loss, metrics = super().train_step(batch, step)
            self.step_losses.append(loss)
            return loss, metrics

        def after_optimizer_step(self, step):
            super().after_optimizer_step(step)
            if step == crash_at:
                raise KeyboardInterrupt(f"simulated kill at step {step}")

    return Instrumented


def subject_anatomy_dataset(root, num_subjects: int = 8):
    """Scans of 8 subjects x 2 sessions x 2 sequences where a subject's scans share their anatomy.

    Each subject has its own smooth random "anatomy" (smoothness differs between subjects); its
    sequences show it with another contrast, each scan with its own noise. So two scans of one
    subject at the same place in the head look alike and other subjects do not: the signal the
    subject-aware objectives are meant to pick up.
    """
    folder = build_preprocessed(root, "pretraining", num_cases=4 * num_subjects)
    plans = load_plans(folder)
    rng = np.random.default_rng(7)
    for subject in range(num_subjects):
        anatomy = gaussian_filter(rng.normal(size=(40, 40, 40)), sigma=1.0 + 0.6 * subject)
        anatomy = (anatomy - anatomy.mean()) / anatomy.std()
        for scan in range(4):
            case = PreprocessedCase(str(folder / "3d_fullres"), f"img_{4 * subject + scan:03d}")
            brain = np.asarray(case.data())[0] != 0
            contrast = (1.0, 0.0) if scan % 2 == 0 else (-0.8, 0.5)  # the second sequence inverts the contrast
            image = contrast[0] * anatomy + contrast[1] + 0.2 * rng.normal(size=anatomy.shape)
            write_case(case.folder, case.case_id, (image * brain)[None].astype(np.float32), None, case.properties,
                       plans)
    return folder


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return subject_anatomy_dataset(tmp_path_factory.mktemp("pre"))


@pytest.fixture(scope="module")
def plans(data):
    return load_plans(data)


def make_trainer(name, plans, data, out, crash_at=None, **changes):
    options = {**RUN_OPTIONS, "batch_size": BATCH.get(name, 4), **changes}
    options["method"] = {**SMALL[name], **options.get("method", {})}
    return instrumented(get_trainer(name), crash_at)(plans, data, out, "all", TrainerOptions(**options))


@pytest.fixture(scope="module")
def finished_runs(plans, data, tmp_path_factory):
    """One uninterrupted run per method, shared by the tests below (built on first use)."""
    runs = {}

    def get(method):
        if method not in runs:
            out = tmp_path_factory.mktemp(method)
            trainer = make_trainer(method, plans, data, out)
            trainer.run()
            runs[method] = trainer
        return runs[method]

    return get


def weights(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


# ---------------------------------------------------------------- learning

def test_mae_training_loss_falls_below_80_percent(finished_runs):
    losses = np.asarray(finished_runs("mae").step_losses).reshape(EPOCHS, ITERATIONS)
    assert losses[-1].mean() < 0.8 * losses[0].mean()


def fresh_training_batches(trainer, count: int = 4) -> list[dict]:
    """Batches of the training scans from a stream the run never drew from (stream 7)."""
    source = trainer.make_training_source(trainer.train_cases)
    return list(make_loader(source, trainer.seed, 0, 0, count, num_workers=0, stream=7))


@pytest.mark.parametrize("method", METHODS)
def test_trained_network_beats_its_initialization(finished_runs, method):
    """Same fresh batches, masks and crops: loss of the trained vs the initial weights. For dino the
    measure is the student-teacher divergence (cross entropy minus the teacher's entropy), both
    against the final teacher and centres: the student learned to match its teacher across views."""
    trainer = finished_runs(method)
    batches = fresh_training_batches(trainer)

    def measure():
        result = trainer.validate(batches)
        return result["val_dino"] - result["val_teacher_entropy"] if method == "dino" else result["val_loss"]

    trained = measure()
    final_state = weights(trainer.network)
    trainer.network.load_state_dict(trainer.initial_state)
    initial = measure()
    trainer.network.load_state_dict(final_state)
    assert trained < 0.8 * initial, (method, trained, initial)


def test_held_out_subjects_are_not_trained_on(finished_runs):
    trainer = finished_runs("contrastive")
    train_subjects = {c.subject for c in trainer.train_cases}
    val_subjects = {c.subject for c in trainer.val_cases}
    assert len(val_subjects) == 2 and not train_subjects & val_subjects  # 2: NT-Xent needs negatives
    split = json.loads((trainer.output_dir / "pretraining_split.json").read_text())
    assert sorted(split["validation_subjects"]) == sorted(val_subjects)


# ---------------------------------------------------------------- checkpoints -> finetuning

def finetuning_plans(record: dict, task_type: str, channels: int) -> Plans:
    """A finetuning dataset planned like the checkpoint: the record's network plan, more channels."""
    pretrained = Plans.from_json(record["plans"])
    extra = {"segmentation": {"labels": {"background": 0, "lesion": 1}},
             "classification": {"classes": {"0": "no", "1": "yes"}}}.get(task_type, {})
    network = dataclasses.replace(pretrained.network, fusion="stem_expansion" if channels > 1 else "none")
    return pretrained.replace(task_type=task_type, channel_names=[f"seq{i}" for i in range(channels)],
                              normalization=pretrained.normalization * channels, network=network, method={}, **extra)


@pytest.mark.parametrize("method", METHODS)
def test_checkpoint_encoder_loads_into_finetuning_networks_via_the_record(finished_runs, method):
    trainer = finished_runs(method)
    state = torch.load(trainer.output_dir / "checkpoint_final.pth", weights_only=True)
    record = state[ADAPTATION_RECORD_KEY]
    assert record["pretraining"]["method"] == method and record["pretraining"]["sampling"] == trainer.sampling
    assert record["data_provenance"]["num_scans"] == 32 and record["data_provenance"]["num_subjects"] == 8
    rebuilt = build_from_record(record)
    rebuilt.load_state_dict(state["network"])  # strict: the record rebuilds exactly the trained network
    for task_type, channels in (("classification", 2), ("segmentation", 3), ("regression", 1)):
        model = build_finetuning_network(finetuning_plans(record, task_type, channels))
        report = load_encoder_weights(model, state["network"])
        assert report["missing"] == [] and report["unexpected"] == [] and report["shape_mismatch"] == []
        assert sorted(report["loaded"]) == sorted(record["encoder_keys"])
        loaded = model.state_dict()
        unchanged = [k for k in record["encoder_keys"] if k not in record["stem_weight_keys"] or channels == 1]
        assert all(torch.equal(loaded[k], state["network"][k]) for k in unchanged)


def test_export_encoder_round_trip(finished_runs, tmp_path, capsys):
    trainer = finished_runs("vae")
    checkpoint = trainer.output_dir / "checkpoint_final.pth"
    out = export_encoder(checkpoint, tmp_path / "encoder.pth")
    exported = torch.load(out, weights_only=True)
    full = torch.load(checkpoint, weights_only=True)
    record = exported[ADAPTATION_RECORD_KEY]
    assert sorted(exported["encoder"]) == sorted(record["encoder_keys"])
    assert all(torch.equal(v, full["network"][k]) for k, v in exported["encoder"].items())
    assert "optimizer" not in exported and "extra" not in exported and Plans.from_json(exported["plans"])
    model = build_finetuning_network(finetuning_plans(record, "regression", 1))
    report = load_encoder_weights(model, exported["encoder"])
    assert not report["missing"] and not report["unexpected"]

    assert export_main([str(checkpoint), str(tmp_path / "cli.pth")]) == 0
    assert "method vae" in capsys.readouterr().out
    save_checkpoint({"network": full["network"]}, tmp_path / "no_record.pth")
    assert export_main([str(tmp_path / "no_record.pth"), str(tmp_path / "x.pth")]) == 2
    with pytest.raises(BadInputError, match="unknown checkpoint format"):
        export_encoder(tmp_path / "no_record.pth", tmp_path / "x.pth")


# ---------------------------------------------------------------- resume

@pytest.mark.parametrize("method", METHODS)
def test_resume_after_kill_matches_uninterrupted_run(finished_runs, plans, data, tmp_path, method):
    reference = finished_runs(method)
    killed = make_trainer(method, plans, data, tmp_path, crash_at=CRASH_STEP)
    with pytest.raises(KeyboardInterrupt):
        killed.run()
    assert load_checkpoint(tmp_path / "checkpoint_latest.pth")["epoch"] == CRASH_STEP // ITERATIONS
    resumed = make_trainer(method, plans, data, tmp_path, continue_training=True)
    resumed.run()
    assert resumed.start_epoch == CRASH_STEP // ITERATIONS
    final, expected = weights(resumed.network), weights(reference.network)
    assert all(torch.equal(final[k], expected[k]) for k in expected), method
    assert resumed.step_losses == reference.step_losses[CRASH_STEP // ITERATIONS * ITERATIONS:]
    if method == "dino":
        assert all(torch.equal(a, b) for a, b in zip(resumed.teacher.state_dict().values(),
                                                     reference.teacher.state_dict().values()))
        assert torch.equal(resumed.center, reference.center)


# ---------------------------------------------------------------- encoders, sampling, settings

VARIANTS = [(m, {}) for m in METHODS] + [
    ("mae", {"mask_value": "learned", "loss_on": "all", "loss": "smooth_l1", "token_size": [4, 8, 8]}),
    ("contrastive", {"positives": "crops", "batch_standardize": False}),
    ("hybrid", {"positives": "crops"}),
    ("vae", {"loss_on": "masked", "loss": "mse"}),
    ("dino", {"ibot_weight": 0.0, "num_local_crops": 0}),
]


@pytest.mark.parametrize("method,settings", VARIANTS)
def test_every_method_and_variant_trains_a_residual_encoder(plans, data, tmp_path, method, settings):
    residual = plans.replace(network=dataclasses.replace(plans.network, encoder="residual"))
    options = TrainerOptions(**{**RUN_OPTIONS, "method": {**SMALL[method], **settings}})
    trainer = instrumented(get_trainer(method))(residual, data, tmp_path, "all", options)
    trainer.setup()
    batch = next(iter(make_loader(trainer.make_training_source(trainer.train_cases), 0, 0, 0, 1, 0)))
    stem = stem_weight_keys(trainer.network)[0]
    before = trainer.network.state_dict()[stem].clone()
    loss, _ = trainer.train_step(batch, 0)
    assert np.isfinite(loss) and trainer.network.encoder.__class__.__name__ == "ResidualEncoder"
    assert not torch.equal(before, trainer.network.state_dict()[stem])  # the gradient reached the stem
    assert all(p.grad is not None for p in trainer.network.parameters() if p.requires_grad)  # DDP needs every one


def shifted_pair_dataset(root):
    """One subject, two scans whose preprocessed grids are offset in the head; voxel values encode
    world position, so a correctly mapped pair of crops holds identical values."""
    folder = build_preprocessed(root, "pretraining", num_cases=4)
    cases_dir = folder / "3d_fullres"
    for path in cases_dir.glob("*"):
        path.unlink()
    plans = load_plans(folder)  # positions up to 595959 need float32's range and precision
    plans = plans.replace(storage=dataclasses.replace(plans.storage, dtype="float32"))
    save_plans(plans, folder / "plans.json")
    full = np.stack(np.meshgrid(*[np.arange(60)] * 3, indexing="ij")).astype(np.float32)
    world = full[0] + 100 * full[1] + 10000 * full[2]
    # scan b's grid starts elsewhere and is larger, so it holds every region of scan a
    for name, lower, shape in (("scan_a", (10, 8, 12), (40, 40, 40)), ("scan_b", (3, 2, 5), (56, 54, 55))):
        crop = world[tuple(slice(lo, lo + s) for lo, s in zip(lower, shape))]
        props = {"case_id": name, "subject": "sub_1", "session": "ses_1", "sequence": name[-1],
                 "image_properties": {"ras_affine": np.diag([1.0, 1.0, 1.0, 1.0]).tolist()},
                 "crop_bbox": [[lo, lo + s] for lo, s in zip(lower, crop.shape)],
                 "shape_after_crop": list(crop.shape), "shape_after_resampling": list(crop.shape)}
        write_case(cases_dir, name, crop[None], None, props, plans)
    return folder


def test_subject_pair_sampler_pairs_one_subject_at_the_same_world_region(plans, data, tmp_path):
    trainer = get_trainer("contrastive")(plans, data, tmp_path / "a", "all", TrainerOptions(**RUN_OPTIONS))
    cases = cases_of(data)
    subject_of = {c.case_id: c.subject for c in cases}
    batch = trainer.make_training_source(cases)(StepDraw(0, 0))
    assert trainer.sampling == "subject_pairs" and set(batch) >= {"image", "image_pair", "subject"}
    assert all(subject_of[a] == subject_of[b] == s and a != b
               for a, b, s in zip(batch["case_id"], batch["case_id_pair"], batch["subject"]))

    folder = shifted_pair_dataset(tmp_path / "shifted")
    pair_cases = cases_of(folder)
    checked = 0
    for seed in range(4):
        pairs = trainer.make_training_source(pair_cases)(StepDraw(seed, 0))
        for index in [i for i, case_id in enumerate(pairs["case_id"]) if case_id == "scan_a"]:
            # same voxel values = same place in the head (scan b's grid holds every region of scan a)
            assert torch.equal(pairs["image"][index], pairs["image_pair"][index])
            checked += 1
    assert checked >= 4
    vae = get_trainer("vae")(plans, data, tmp_path / "v", "all", TrainerOptions(**RUN_OPTIONS))
    same_session = vae.make_training_source(cases)(StepDraw(1, 0))["same_session"]
    assert bool(same_session.all())  # FOMO2JOMO pairs: one subject and session
    crops = get_trainer("contrastive")(plans, data, tmp_path / "c", "all",
                                       TrainerOptions(**RUN_OPTIONS, method={"positives": "crops"}))
    assert crops.sampling == "iid" and "image_pair" not in crops.make_training_source(cases)(StepDraw(0, 0))


def test_settings_are_checked(plans, data, tmp_path):
    with pytest.raises(ValueError, match="trainer 'mae' \\(--set\\): unknown setting 'mask_ratoi'; did you mean 'mask_ratio'"):
        get_trainer("mae")(plans, data, tmp_path, "all", TrainerOptions(method={"mask_ratoi": 0.7}))
    with pytest.raises(ValueError, match="mask_ratio"):
        get_trainer("MAE")(plans, data, tmp_path, "all", TrainerOptions(method={"mask_ratio": 1.0}))
    with pytest.raises(ValueError, match="teacher must be the sharper"):
        get_trainer("Dino")(plans, data, tmp_path, "all", TrainerOptions(method={"teacher_temperature": 0.5}))
    with pytest.raises(ValueError, match="positives"):
        get_trainer("contrastive")(plans, data, tmp_path, "all", TrainerOptions(method={"positives": "sessions"}))
    assert set(METHODS) <= set(all_trainers())
    assert {get_trainer(m).sampling for m in METHODS} == {"iid", "subject_pairs"}


def test_pretraining_with_the_real_augmentation_preset(tmp_path):
    from fomo_nn.augmentation import default_augmentation_plan

    folder = build_preprocessed(tmp_path, "pretraining", num_cases=8,
                                augmentation=default_augmentation_plan("pretraining_reconstruction"))
    trainer = make_trainer("mae", load_plans(folder), folder, tmp_path / "out", epochs=1, iterations_per_epoch=2,
                           batch_size=2)
    trainer.setup()
    batch = next(iter(make_loader(trainer.make_training_source(trainer.train_cases), 0, 0, 0, 1, 0)))
    assert batch["image"].shape == batch["target"].shape == (2, 1, 32, 32, 32)
    trainer.run()
    assert all(np.isfinite(trainer.step_losses))


# ---------------------------------------------------------------- pieces

def test_token_masks_hide_exact_token_cubes():
    generator = torch.Generator().manual_seed(0)
    tokens = random_token_mask(3, (4, 4, 4), 0.6, generator)
    assert tokens.shape == (3, 4, 4, 4) and tokens.flatten(1).sum(1).tolist() == [38, 38, 38]  # round(0.6 * 64)
    mask = voxel_mask(2, (30, 32, 32), 8, 0.6, torch.Generator().manual_seed(1))
    assert mask.shape == (2, 1, 30, 32, 32) and mask.dtype == torch.bool
    cubes = mask[:, 0, :24].reshape(2, 3, 8, 4, 8, 4, 8)
    assert torch.equal(cubes.all(dim=(2, 4, 6)), cubes.any(dim=(2, 4, 6)))  # constant within each token
    again = voxel_mask(2, (30, 32, 32), 8, 0.6, torch.Generator().manual_seed(1))
    assert torch.equal(mask, again)


def test_nt_xent_values_and_same_subject_exclusion():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    loss, accuracy = nt_xent(a, a.clone(), temperature=1.0)
    # each row: positive cos 1, negatives cos 0 (twice): -log(e / (e + 2))
    assert loss.item() == pytest.approx(-np.log(np.e / (np.e + 2)), rel=1e-5) and accuracy.item() == 1.0
    same_subject, _ = nt_xent(a, a.clone(), temperature=1.0, groups=group_codes(["s1", "s1"]))
    assert same_subject.item() == pytest.approx(0.0, abs=1e-6)  # nothing left to contrast against


def test_loss_pieces():
    assert gaussian_kl(torch.zeros(4, 3), torch.zeros(4, 3)).item() == 0.0
    assert gaussian_kl(torch.ones(4, 3), torch.zeros(4, 3)).item() == pytest.approx(0.5)
    z = batch_standardize(torch.tensor([[1.0, 5.0], [1.1, 5.0], [1.2, 5.0]]))
    assert z[:, 0].mean().abs() < 1e-6 and z[:, 0].std(unbiased=False) == pytest.approx(1.0, rel=1e-3)
    assert kl_ramp(0, 10, 1e-3) == 0.0 and kl_ramp(5, 10, 1e-3) == pytest.approx(5e-4) and kl_ramp(30, 10, 1e-3) == 1e-3
    assert teacher_momentum_at(0, 100, 0.996) == pytest.approx(0.996)
    assert teacher_momentum_at(99, 100, 0.996) == pytest.approx(1.0)


def test_split_by_subject_and_provenance(data, tmp_path):
    cases = cases_of(data)
    train, val = split_by_subject(cases, seed=3)
    assert len({c.subject for c in val}) == 1 and not {c.subject for c in train} & {c.subject for c in val}
    few = [c for c in cases if c.subject in ("sub_0", "sub_1", "sub_2")]
    assert split_by_subject(few, seed=3) == (few, few)  # < 4 subjects: validate on the training scans
    folder = tmp_path / data.name
    folder.mkdir()
    (folder / "manifest.json").write_text(json.dumps({"sources": ["FOMO60K"], "images": [], "num_images": 60529,
                                                      "num_subjects": 11187, "num_sessions": 13900}))
    provenance = data_provenance(folder, cases)
    assert provenance["track"] == "method" and provenance["manifest"]["num_images"] == 60529
    assert (provenance["num_scans"], provenance["num_subjects"], provenance["num_sessions"]) == (32, 8, 16)
    (folder / "manifest.json").write_text(json.dumps({"sources": ["FOMO60K", "BraTS"], "images": []}))
    assert data_provenance(folder, cases)["track"] == "open"


def test_plans_method_settings_reach_the_trainer(data, plans, tmp_path):
    edited = plans.replace(method={"mask_ratio": 0.75, "token_size": 16})
    save_plans(edited, tmp_path / "plans.json")
    trainer = get_trainer("mae")(load_plans(tmp_path / "plans.json"), data, tmp_path, "all",
                                 TrainerOptions(method={"token_size": 4}))
    assert trainer.method["mask_ratio"] == 0.75 and trainer.method["token_size"] == 4  # --set wins over plans


def test_a_trainer_of_another_family_trains_with_its_own_augmentation_preset(tmp_path):
    from fomo_nn.augmentation.presets import default_augmentation_plan

    data = build_preprocessed(tmp_path, "pretraining", num_cases=8, shape=(32, 32, 32))
    planned = load_plans(data).replace(augmentation=default_augmentation_plan("pretraining_reconstruction"),
                                       augmentation_family="pretraining_reconstruction")
    contrastive = get_trainer("contrastive")(planned, data, tmp_path / "c", "all", TrainerOptions())
    assert contrastive.plans.augmentation == default_augmentation_plan("pretraining_contrastive")
    assert contrastive.plans.augmentation_family == "pretraining_contrastive"
    mae = get_trainer("mae")(planned, data, tmp_path / "m", "all", TrainerOptions())
    assert mae.plans.augmentation == planned.augmentation  # its own family: the plans' (maybe edited) preset
    edited = planned.replace(augmentation={}, augmentation_family=None)  # hand-written plans stay as they are
    assert get_trainer("contrastive")(edited, data, tmp_path / "e", "all", TrainerOptions()).plans.augmentation == {}
