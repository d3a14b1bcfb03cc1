"""The FOMO25 question end to end: pretrain, finetune vs from scratch, predict OOD test sites, rank.

Every stage calls the same public commands a user would run (in-process), so the demo exercises
exactly the shipped code paths; their outputs stay on disk under the work folder.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from fomo_nn.demo.budget import Budget
from fomo_nn.demo.representation import run_representation_track
from fomo_nn.demo.stages import Stage
from fomo_nn.challenges.fomo25 import TASK_RULES
from fomo_nn.utils.files import write_json_atomic, write_text_atomic

PRETRAINING_DATASET = (1, "FOMO60K")
SCRATCH = "supervised_scratch"
PRETRAINED = "pretrained"  # with family defaults: each task finetunes its family's pretraining method
PROBED_FAMILIES = ("classification", "regression")  # tasks with a pooled head: probes score them


@dataclass(frozen=True)
class DemoTask:
    number: int  # FOMO25 task
    dataset_id: int
    name: str

    @property
    def family(self) -> str:
        """classification | segmentation | regression: the FOMO25 task's type."""
        return TASK_RULES[self.number].task_type

    @property
    def key(self) -> str:
        return f"task{self.number}"

    @property
    def folder(self) -> str:
        return f"Dataset{self.dataset_id:03d}_{self.name}"


TASKS = (DemoTask(1, 11, "Task1Infarct"), DemoTask(2, 12, "Task2Meningioma"), DemoTask(3, 13, "Task3BrainAge"))


@dataclass
class DataSources:
    """Where the data come from: the generated sample, or real FOMO folders for --budget full."""

    fomo60k: Path
    finetune: dict[str, Path]  # task key -> FOMO task folder (preprocessed/, labels/)
    test: dict[str, Path]

    @classmethod
    def generated(cls, root: Path) -> "DataSources":
        return cls(root / "fomo60k", {t.key: root / "finetune" / t.key for t in TASKS},
                   {t.key: root / "test" / t.key for t in TASKS})


def _check(code: int, what: str) -> None:
    if code != 0:
        raise RuntimeError(f"{what} failed (exit status {code}); see the messages above")


class DemoPipeline:
    def __init__(self, workdir: Path, budget: Budget, methods: tuple[str, ...] | None = None, seed: int = 0,
                 sources: DataSources | None = None, device: str = "auto"):
        """`methods`: every task finetunes every one of them; None: each task its family's default
        (budget.family_methods), reported as one model `pretrained`."""
        self.workdir = Path(workdir).resolve()
        self.budget = budget
        self.family_defaults = methods is None
        self.methods = (tuple(dict.fromkeys(budget.family_methods[t.family] for t in TASKS)) if methods is None
                        else tuple(methods))
        self.seed = seed
        self.device = device
        self.sources = sources or DataSources.generated(self.workdir / "sample_data")
        os.environ["fomo_nn_raw"] = str(self.workdir / "fomo_nn_raw")
        os.environ["fomo_nn_preprocessed"] = str(self.workdir / "fomo_nn_preprocessed")
        os.environ["fomo_nn_results"] = str(self.workdir / "fomo_nn_results")

    # ------------------------------------------------------------------ locations
    @property
    def model_names(self) -> list[str]:
        if self.family_defaults:
            return [SCRATCH, PRETRAINED]
        return [SCRATCH] + [f"pretrained_{m}" for m in self.methods]

    def method_of(self, task: DemoTask, model: str) -> str | None:
        """The pretraining method behind a model on a task (None for the baseline)."""
        if model == SCRATCH:
            return None
        if model == PRETRAINED:
            return self.budget.family_methods[task.family]
        return model.removeprefix("pretrained_")

    def raw(self, folder: str) -> Path:
        return self.workdir / "fomo_nn_raw" / folder

    def preprocessed(self, folder: str) -> Path:
        return self.workdir / "fomo_nn_preprocessed" / folder

    @property
    def pretraining_folder(self) -> str:
        return f"Dataset{PRETRAINING_DATASET[0]:03d}_{PRETRAINING_DATASET[1]}"

    def pretraining_checkpoint(self, method: str) -> Path:
        return self.workdir / "models" / "pretraining" / method / "fold_all" / "checkpoint_final.pth"

    def model_dir(self, task: DemoTask, model: str) -> Path:
        return self.workdir / "models" / task.key / model

    def predictions_dir(self, task: DemoTask, model: str) -> Path:
        return self.workdir / "predictions" / model / task.key

    def summary_path(self, task: DemoTask, model: str) -> Path:
        return self.workdir / "results" / model / f"{task.key}_{task.family}.json"

    def probe_path(self, task: DemoTask) -> Path:
        return self.workdir / "results" / "probes" / f"{task.key}_{task.family}.json"

    def scratch_plans_path(self, task: DemoTask) -> Path:
        return self.workdir / "plans" / f"{task.key}_{SCRATCH}.json"

    @property
    def test_sites(self) -> Path | None:
        """case_id,group CSV of the generated test cases' sites (None for real data: sites unknown)."""
        path = self.workdir / "sample_data" / "test_sites.csv"
        return path if path.is_file() else None

    @property
    def probed_tasks(self) -> list[DemoTask]:
        return [task for task in TASKS if task.family in PROBED_FAMILIES]

    @property
    def report_dir(self) -> Path:
        return self.workdir / "report"

    # ------------------------------------------------------------------ stages
    def stages(self) -> list[Stage]:
        stages = []
        if self.budget.sample_size is not None:
            stages.append(Stage("generate", "generate sample data", self.generate))
        stages += [Stage("convert", "convert to fomo_nn datasets", self.convert),
                   Stage("plan_pretraining", "plan and preprocess the pretraining corpus", self.plan_pretraining),
                   Stage("plan_tasks", "plan the tasks like the pretrained model, preprocess", self.plan_tasks)]
        stages += [Stage(f"pretrain_{m}", f"pretrain ({m})", lambda m=m: self.pretrain(m)) for m in self.methods]
        stages.append(Stage("probe", "probe frozen encoders against random ones on held-out sites", self.probe))
        stages.append(Stage("representation", "FOMO26 representation track: embed the probing cohort, organisers' "
                                              "probe and fairness", lambda: run_representation_track(self)))
        for task in TASKS:
            for model in self.model_names:
                stages.append(Stage(f"finetune_{task.key}_{model}", f"finetune {task.key} {task.family} ({model})",
                                    lambda t=task, m=model: self.finetune(t, m)))
        for task in TASKS:
            for model in self.model_names:
                stages.append(Stage(f"predict_{task.key}_{model}", f"predict {task.key} test sites ({model})",
                                    lambda t=task, m=model: self.predict(t, m)))
        stages += [Stage("evaluate", "evaluate every model on every task", self.evaluate),
                   Stage("rank", "rank with bootstrap and permutation tests", self.rank),
                   Stage("report", "write REPORT.md", self.report)]
        return stages

    def generate(self) -> dict:
        from dataset_conversion.sample_data.generate import generate_sample_data

        meta = generate_sample_data(self.workdir / "sample_data", seed=self.seed, size=self.budget.sample_size,
                                    num_workers=2)
        rows = [f"{case['case_id']},{case['site']}" for task in TASKS for case in meta["test"][task.key]]
        write_text_atomic(self.workdir / "sample_data" / "test_sites.csv", "case_id,group\n" + "\n".join(rows) + "\n")
        return {"counts": meta.get("counts")}

    def generate_probing_cohort(self) -> Path | None:
        """The sample world's FOMO26 probing cohort (its subjects CSV), generated on first use; None when the demo
        runs on data it did not generate."""
        if self.budget.sample_size is None:
            return None
        from dataset_conversion.sample_data.probing_cohort import generate_probing_cohort

        return generate_probing_cohort(self.workdir / "sample_data", self.seed, self.budget.sample_size)

    def convert(self) -> dict:
        from fomo_nn.cli.convert import main as convert

        number, name = PRETRAINING_DATASET
        _check(convert(["fomo60k", str(self.sources.fomo60k), "-d", str(number), "--name", name]), "fomo60k conversion")
        for task in TASKS:
            common = ["--task", str(task.number), "-d", str(task.dataset_id), "--name", task.name]
            _check(convert(["fomo-task", str(self.sources.finetune[task.key]), *common]), f"{task.key} conversion")
            _check(convert(["fomo-task", str(self.sources.test[task.key]), *common, "--split", "test"]),
                   f"{task.key} test conversion")
        return {}

    def plan_pretraining(self) -> dict:
        from fomo_nn.cli.plan_and_preprocess import main as plan_and_preprocess

        _check(plan_and_preprocess(["-d", str(PRETRAINING_DATASET[0]), "-np", "2", *self.budget.planner_args]),
               "planning the pretraining corpus")
        return {}

    def plan_tasks(self) -> dict:
        from fomo_nn.cli.plan_and_preprocess import main as plan_and_preprocess

        from fomo_nn.planning.planner import with_fusion
        from fomo_nn.plans import load_plans, save_plans

        pretraining_plans = self.preprocessed(f"Dataset{PRETRAINING_DATASET[0]:03d}_{PRETRAINING_DATASET[1]}")
        for task in TASKS:
            _check(plan_and_preprocess(["-d", str(task.dataset_id), "-np", "2", *self.budget.planner_args,
                                        "--plans-like", str(pretraining_plans / "plans.json"),
                                        "--fusion", self.budget.fusion]), f"planning {task.key}")
            # the baseline's own input handling, on the same preprocessed arrays
            plans = load_plans(self.preprocessed(task.folder))
            self.scratch_plans_path(task).parent.mkdir(parents=True, exist_ok=True)
            save_plans(with_fusion(plans, self.budget.scratch_fusion), self.scratch_plans_path(task))
        return {}

    def _train(self, dataset: str, trainer: str | None, output: Path, epochs: int, plans_path: Path | None = None,
               **extra) -> Path:
        from fomo_nn.training.run import train

        return train(dataset, "all", trainer=trainer, plans_path=str(plans_path) if plans_path else None,
                     output=str(output), device=self.device, epochs=epochs,
                     iterations_per_epoch=extra.pop("iterations"), num_workers=self.budget.num_workers,
                     batch_size=self.budget.batch_size, seed=self.seed, continue_training=True, **extra)

    def pretrain(self, method: str) -> dict:
        output = self.pretraining_checkpoint(method).parent
        probes = [str(task.dataset_id) for task in self.probed_tasks] if self.budget.probe_every else []
        self._train(str(PRETRAINING_DATASET[0]), method, output, self.budget.pretrain_epochs,
                    iterations=self.budget.pretrain_iterations, learning_rate=self.budget.pretrain_lr,
                    probe_datasets=probes, probe_every=max(1, self.budget.probe_every))
        return {"checkpoint": str(self.pretraining_checkpoint(method))}

    def probe(self) -> dict:
        from fomo_nn.probing.runner import ProbeRequest, run_probes

        encoders = {f"random:{seed}": f"random:{seed}" for seed in range(self.budget.random_probe_seeds)}
        encoders.update({f"pretrained_{m}": str(self.pretraining_checkpoint(m)) for m in self.methods})
        for task in self.probed_tasks:
            result = run_probes(ProbeRequest(dataset=str(task.dataset_id), encoders=encoders, seed=self.seed,
                                             groups=str(self.test_sites) if self.test_sites else None,
                                             device="cuda" if self.device == "cuda" else "cpu"))
            write_json_atomic(self.probe_path(task), result)
        return {"probes": [str(self.probe_path(task)) for task in self.probed_tasks]}

    def finetune(self, task: DemoTask, model: str) -> dict:
        """Same steps for both sides; each with its own learning rate and input handling."""
        scratch = model == SCRATCH
        pretrained = None if scratch else str(self.pretraining_checkpoint(self.method_of(task, model)))
        output = self.model_dir(task, model) / "fold_all"
        self._train(str(task.dataset_id), None, output, self.budget.finetune_epochs[task.family],
                    plans_path=self.scratch_plans_path(task) if scratch else None,
                    iterations=self.budget.finetune_iterations,
                    training=dict((self.budget.scratch_recipe if scratch else self.budget.pretrained_recipe)[task.family]),
                    pretrained=pretrained)
        return {"model": str(self.model_dir(task, model))}

    def predict(self, task: DemoTask, model: str) -> dict:
        from fomo_nn.cli.predict import main as predict

        output = self.predictions_dir(task, model)
        _check(predict(["-i", str(self.raw(task.folder) / "imagesTs"), "-o", str(output), "-m",
                        str(self.model_dir(task, model)), "--tta" if self.budget.tta else "--no-tta",
                        "--device", self.device, "--no-progress"]), f"prediction of {task.key} with {model}")
        return {"predictions": str(output)}

    def evaluate(self) -> dict:
        from fomo_nn.cli.evaluate import main as evaluate

        for task in TASKS:
            for model in self.model_names:
                _check(evaluate(["--task-type", task.family, "-r", str(self.raw(task.folder) / "labelsTs"),
                                 "-p", str(self.predictions_dir(task, model)),
                                 "-o", str(self.summary_path(task, model)), "--quiet"]),
                       f"evaluation of {task.key} with {model}")
        return {}

    def rank(self) -> dict:
        from fomo_nn.cli.rank import main as rank

        result_dirs = [str(self.workdir / "results" / model) for model in self.model_names]
        _check(rank([*result_dirs, "-o", str(self.report_dir), "--bootstrap", str(self.budget.bootstrap),
                     "--permutations", str(self.budget.bootstrap), "--seed", str(self.seed), "--quiet"]), "ranking")
        return {}

    def report(self) -> dict:
        from fomo_nn.demo.report import write_report

        path = write_report(self)
        return {"report": str(path)}
