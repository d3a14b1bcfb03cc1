"""fomo_nn_predict against nnU-Net v2's predictor, end to end per case, at matched settings.

Segmentation: one synthetic 1 mm head (int16 NIfTI, LPS storage), one channel, the same U-Net in
both frameworks (PlainConv, features 32-64-128-256-320, 5 stages, 2 convs per stage, instance norm,
LeakyReLU; identical weights: fomo_nn's are copied into nnU-Net's network), the same patch, step 0.5,
Gaussian weighting, TTA off and on (8 mirrorings), one fold, CPU. Timed: files in -> mask file out,
model loading excluded; per case for a 1-case run (what one new scan costs, worker start-up included)
and a 3-case run (start-up amortized, pipelines overlapping). fomo_nn's opt-in --cpu-bf16 is timed too
(nnU-Net has no counterpart on CPU). nnU-Net runs in its own venv (default /tmp/nnunet_venv) through
nnUNetPredictor.initialize_from_trained_model_folder + predict_from_files, with nnUNetv2_predict's
default worker counts (-npp 3 -nps 3).

Overhead at full size: the non-network work per case (reading + preprocessing, export of the
mask into the input's grid) on a 160x192x160 head, for both frameworks, with random network outputs.

Classification / regression: time per case of a 5-fold ensemble (default encoder, no TTA, 3 cases).

On 2 CPU cores the full-size case with the default patch 128 costs ~64 forward passes of ~20-30 s
with TTA per framework, so the end-to-end comparison uses a smaller stand-in head by default
(--shape, --patch); `--shape 160 192 160 --patch 128` is the real size (for a bigger machine / GPU).

    python benchmarks/bench_inference.py [--shape 72 88 72] [--patch 64] [--nnunet-python /tmp/nnunet_venv/bin/python]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fomo_nn.inference.export import CaseOutputs  # noqa: E402
from fomo_nn.inference.inputs import discover_cases  # noqa: E402
from fomo_nn.inference.model_folder import load_ensemble  # noqa: E402
from fomo_nn.inference.predictor import EnsemblePredictor, PredictionSettings  # noqa: E402
from fomo_nn.networks import build_finetuning_network, count_parameters  # noqa: E402
from fomo_nn.plans import NetworkPlan, NormalizationPlan, Plans, save_plans  # noqa: E402
from fomo_nn.checkpoints.training_state import save_checkpoint  # noqa: E402

FEATURES = [32, 64, 128, 256, 320]
NNUNET_SCRIPT = r"""
import json, sys, time, os
import numpy as np, torch
cfg = json.loads(sys.argv[1])
from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
from nnunetv2.inference.export_prediction import export_prediction_from_logits
results = {}
if cfg["mode"] == "end_to_end":
    for tta in cfg["tta"]:
        predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=tta,
                                    perform_everything_on_device=False, device=torch.device("cpu"), allow_tqdm=False)
        predictor.initialize_from_trained_model_folder(cfg["model"], use_folds=(0,), checkpoint_name="checkpoint_final.pth")
        out = os.path.join(cfg["out"], f"tta_{int(tta)}_{len(cfg['images'])}")
        start = time.perf_counter()
        predictor.predict_from_files([[image] for image in cfg["images"]],
                                     [os.path.join(out, f"case{i}") for i in range(len(cfg["images"]))],
                                     save_probabilities=False, overwrite=True, num_processes_preprocessing=3,
                                     num_processes_segmentation_export=3)
        results[str(int(tta))] = (time.perf_counter() - start) / len(cfg["images"])
else:
    predictor = nnUNetPredictor(device=torch.device("cpu"), allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(cfg["model"], use_folds=(0,), checkpoint_name="checkpoint_final.pth")
    preprocessor = predictor.configuration_manager.preprocessor_class(verbose=False)
    start = time.perf_counter()
    data, _, properties = preprocessor.run_case([cfg["image"]], None, predictor.plans_manager,
                                                predictor.configuration_manager, predictor.dataset_json)
    results["prepare"] = time.perf_counter() - start
    logits = torch.from_numpy(np.random.default_rng(0).standard_normal((2, *data.shape[1:])).astype(np.float32))
    start = time.perf_counter()
    export_prediction_from_logits(logits, properties, predictor.configuration_manager, predictor.plans_manager,
                                  predictor.dataset_json, os.path.join(cfg["out"], "overhead_case"), False)
    results["export"] = time.perf_counter() - start
    results["shape"] = list(data.shape)
print("RESULT " + json.dumps(results))
"""


# ------------------------------------------------------------------------------------------------ data
def write_head(path: Path, shape, seed: int = 0) -> Path:
    """A skull-stripped-looking 1 mm head: ellipsoid with texture, ventricles and a bright lesion; LPS storage."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij"))
    radius = np.sqrt(((grid / np.array([0.88, 0.9, 0.86])[:, None, None, None]) ** 2).sum(0))
    lesion = ((grid - np.array([0.3, -0.25, 0.2])[:, None, None, None]) ** 2).sum(0) < 0.02
    image = (radius < 1) * (500 + 120 * np.cos(9 * radius) + 40 * rng.standard_normal(shape)
                            - 300 * (radius < 0.25) + 500 * lesion)
    affine = np.diag([-1.0, -1.0, 1.0, 1.0])
    affine[:3, 3] = [shape[0] / 2, shape[1] / 2, -shape[2] / 2]
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.clip(image, 0, None).astype(np.int16), affine), str(path))
    return path


# ------------------------------------------------------------------------------------------------ models
def fomo_plans(task_type: str, patch: int) -> Plans:
    extra = {"segmentation": {"labels": {"background": 0, "lesion": 1}},
             "classification": {"classes": {"0": "negative", "1": "positive"}},
             "regression": {"target": {"name": "age", "unit": "years"}}}[task_type]
    return Plans(dataset_name="Dataset990_Bench", task_type=task_type, channel_names=["t1"],
                 target_spacing=[1.0, 1.0, 1.0], spacing_reason="bench", median_shape=[patch] * 3,
                 patch_size=[patch] * 3, batch_size=2, normalization=[NormalizationPlan()],
                 network=NetworkPlan(features_per_stage=FEATURES), **extra)


def write_fomo_model(root: Path, task_type: str, patch: int, folds: int) -> tuple[Path, dict]:
    plans = fomo_plans(task_type, patch)
    folder = root / "fomo" / f"{task_type}__fomo_nnPlans__3d_fullres"
    state = None
    for fold in range(folds):
        torch.manual_seed(fold)
        network = build_finetuning_network(plans)
        state = network.state_dict()
        extra = {"target_normalization": {"mean": 60.0, "std": 15.0}} if task_type == "regression" else {}
        save_checkpoint({"network": state, "plans": plans.to_json(), "trainer": task_type, "fold": str(fold),
                         "extra": extra}, folder / f"fold_{fold}" / "checkpoint_final.pth")
    save_plans(plans, folder / "plans.json")
    return folder, state


def write_nnunet_model(root: Path, patch: int, fomo_state: dict, shape) -> Path:
    """An nnU-Net v2 model folder with the same architecture and fomo_nn's weights (keys mapped)."""
    folder = root / "nnunet" / "nnUNetTrainer__nnUNetPlans__3d_fullres"
    stages = len(FEATURES)
    arch = {"n_stages": stages, "features_per_stage": FEATURES, "conv_op": "torch.nn.modules.conv.Conv3d",
            "kernel_sizes": [[3, 3, 3]] * stages, "strides": [[1, 1, 1]] + [[2, 2, 2]] * (stages - 1),
            "n_conv_per_stage": [2] * stages, "n_conv_per_stage_decoder": [2] * (stages - 1), "conv_bias": True,
            "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d", "norm_op_kwargs": {"eps": 1e-5, "affine": True},
            "dropout_op": None, "dropout_op_kwargs": None, "nonlin": "torch.nn.LeakyReLU",
            "nonlin_kwargs": {"inplace": True}}
    resampling = {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None}
    configuration = {
        "data_identifier": "nnUNetPlans_3d_fullres", "preprocessor_name": "DefaultPreprocessor", "batch_size": 2,
        "patch_size": [patch] * 3, "median_image_size_in_voxels": list(shape), "spacing": [1.0, 1.0, 1.0],
        "normalization_schemes": ["ZScoreNormalization"], "use_mask_for_norm": [True],
        "resampling_fn_data": "resample_data_or_seg_to_shape", "resampling_fn_seg": "resample_data_or_seg_to_shape",
        "resampling_fn_data_kwargs": resampling, "resampling_fn_seg_kwargs": {**resampling, "is_seg": True, "order": 1},
        "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
        "resampling_fn_probabilities_kwargs": {**resampling, "order": 1}, "batch_dice": False,
        "architecture": {"network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
                         "arch_kwargs": arch, "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"]}}
    plans = {"dataset_name": "Dataset990_Bench", "plans_name": "nnUNetPlans",
             "original_median_spacing_after_transp": [1.0, 1.0, 1.0], "original_median_shape_after_transp": list(shape),
             "image_reader_writer": "SimpleITKIO", "transpose_forward": [0, 1, 2], "transpose_backward": [0, 1, 2],
             "configurations": {"3d_fullres": configuration}, "experiment_planner_used": "ExperimentPlanner",
             "label_manager": "LabelManager",
             "foreground_intensity_properties_per_channel": {"0": {"max": 1500.0, "mean": 500.0, "median": 500.0,
                                                                   "min": 0.0, "percentile_00_5": 100.0,
                                                                   "percentile_99_5": 1100.0, "std": 150.0}}}
    dataset = {"channel_names": {"0": "t1"}, "labels": {"background": 0, "lesion": 1}, "numTraining": 1,
               "file_ending": ".nii.gz"}
    weights = dict(fomo_state)
    weights.update({f"decoder.{k}": v for k, v in fomo_state.items() if k.startswith("encoder.")})
    (folder / "fold_0").mkdir(parents=True, exist_ok=True)
    (folder / "plans.json").write_text(json.dumps(plans, indent=1))
    (folder / "dataset.json").write_text(json.dumps(dataset, indent=1))
    torch.save({"network_weights": weights, "trainer_name": "nnUNetTrainer",
                "init_args": {"configuration": "3d_fullres"}, "inference_allowed_mirroring_axes": (0, 1, 2)},
               folder / "fold_0" / "checkpoint_final.pth")
    return folder


def run_nnunet(python: str, config: dict) -> dict:
    env = dict(os.environ, nnUNet_raw=config["out"], nnUNet_preprocessed=config["out"], nnUNet_results=config["out"])
    completed = subprocess.run([python, "-c", NNUNET_SCRIPT, json.dumps(config)], capture_output=True, text=True,
                               env=env)
    lines = [line for line in completed.stdout.splitlines() if line.startswith("RESULT ")]
    if completed.returncode != 0 or not lines:
        raise RuntimeError(f"nnU-Net run failed:\n{completed.stdout[-2000:]}\n{completed.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


# ------------------------------------------------------------------------------------------------ fomo_nn runs
def fomo_end_to_end(model: Path, input_dir: Path, output: Path, tta: bool, cpu_bf16: bool = False) -> float:
    """Seconds per case for all cases of `input_dir` (model loading excluded)."""
    ensemble = load_ensemble(model, device="cpu")
    settings = PredictionSettings(tta=tta, overwrite=True, progress=False, cpu_bf16=cpu_bf16)
    predictor = EnsemblePredictor(ensemble, settings)
    cases = discover_cases(input_dir, ensemble.plans.channel_names)
    start = time.perf_counter()
    report = predictor.predict_folder_cases(cases, output)
    elapsed = time.perf_counter() - start
    assert report.ok, report.failed
    return elapsed / len(cases)


def fomo_overhead(model: Path, input_dir: Path, output: Path) -> dict:
    ensemble = load_ensemble(model, device="cpu")
    predictor = EnsemblePredictor(ensemble, PredictionSettings(progress=False))
    case = discover_cases(input_dir, ensemble.plans.channel_names)[0]
    start = time.perf_counter()
    prepared = predictor.prepare(case)
    prepare = time.perf_counter() - start
    logits = torch.from_numpy(np.random.default_rng(0).standard_normal((2, *prepared.data.shape[1:]), np.float32))
    start = time.perf_counter()
    probabilities = torch.softmax(logits, 0).numpy()
    predictor.export(prepared, probabilities, CaseOutputs(output / "overhead_case.nii.gz"))
    return {"prepare": prepare, "export": time.perf_counter() - start, "shape": list(prepared.data.shape)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", type=int, nargs=3, default=[72, 88, 72], help="stand-in head for end-to-end runs")
    parser.add_argument("--patch", type=int, default=64)
    parser.add_argument("--full-shape", type=int, nargs=3, default=[160, 192, 160], help="head for the overhead run")
    parser.add_argument("--folds", type=int, default=5, help="folds of the classification/regression ensembles")
    parser.add_argument("--nnunet-python", default="/tmp/nnunet_venv/bin/python")
    parser.add_argument("--skip-nnunet", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(os.cpu_count() or 1)
    work = Path(tempfile.mkdtemp(prefix="fomo_bench_inference_"))
    small_in, three_in, full_in = work / "in_small", work / "in_three", work / "in_full"
    write_head(small_in / "case_0000.nii.gz", args.shape)
    for index in range(3):
        write_head(three_in / f"case{index}_0000.nii.gz", args.shape, seed=10 + index)
    write_head(full_in / "case_0000.nii.gz", args.full_shape, seed=1)
    seg_model, state = write_fomo_model(work, "segmentation", args.patch, 1)
    nnunet_model = write_nnunet_model(work, args.patch, state, args.shape)
    parameters = count_parameters(build_finetuning_network(fomo_plans("segmentation", args.patch)))
    print(f"# load average before: {os.getloadavg()[0]:.1f}; torch threads {torch.get_num_threads()}; "
          f"segmentation network {parameters / 1e6:.1f}M parameters", flush=True)
    runs = [("1 case, TTA off", small_in, False), ("1 case, TTA on", small_in, True),
            ("3 cases, TTA off", three_in, False)]
    for label, input_dir, tta in runs:
        fomo = fomo_end_to_end(seg_model, input_dir, work / "fomo_out" / label.replace(" ", "_"), tta)
        nnunet = None
        if not args.skip_nnunet:
            images = [str(p) for p in sorted(input_dir.glob("*_0000.nii.gz"))]
            nnunet = run_nnunet(args.nnunet_python, {"mode": "end_to_end", "tta": [tta], "model": str(nnunet_model),
                                                     "images": images, "out": str(work / "nnunet_out")})[str(int(tta))]
        ratio = "" if nnunet is None else f" (ratio {fomo / nnunet:.2f})"
        print(f"segmentation {tuple(args.shape)}, patch {args.patch}, {label}: per case fomo_nn {fomo:.1f} s, "
              f"nnU-Net {'skipped' if nnunet is None else f'{nnunet:.1f} s'}{ratio}", flush=True)
    bf16 = fomo_end_to_end(seg_model, small_in, work / "fomo_out" / "bf16", True, cpu_bf16=True)
    print(f"segmentation {tuple(args.shape)}, patch {args.patch}, 1 case, TTA on, fomo_nn --cpu-bf16: {bf16:.1f} s",
          flush=True)
    overhead = fomo_overhead(seg_model, full_in, work)
    nn_overhead = None if args.skip_nnunet else run_nnunet(
        args.nnunet_python, {"mode": "overhead", "model": str(nnunet_model), "image": str(full_in / "case_0000.nii.gz"),
                             "out": str(work / "nnunet_out")})
    print(f"overhead {tuple(args.full_shape)} (cropped {overhead['shape'][1:]}): fomo_nn prepare {overhead['prepare']:.2f} s "
          f"export {overhead['export']:.2f} s; nnU-Net "
          + ("skipped" if nn_overhead is None else
             f"prepare {nn_overhead['prepare']:.2f} s export {nn_overhead['export']:.2f} s"), flush=True)
    for task_type in ("classification", "regression"):
        model, _ = write_fomo_model(work, task_type, args.patch, args.folds)
        seconds = fomo_end_to_end(model, three_in, work / f"{task_type}_out", tta=False)
        print(f"{task_type} {args.folds}-fold ensemble {tuple(args.shape)}, patch {args.patch}, 3 cases: "
              f"{seconds:.1f} s per case",
              flush=True)
    print(f"# load average after: {os.getloadavg()[0]:.1f}; work folder {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
