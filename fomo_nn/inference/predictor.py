"""Predict many cases with a fold ensemble, overlapping file work with network work.

While the network predicts case i, a small thread pool reads and preprocesses case i+1 and
exports case i-1 (numpy, zlib and file I/O release the GIL, so threads overlap without copying
volumes between processes). Folds are ensembled by averaging what they output: class
probabilities per voxel (segmentation), class probabilities (classification), values in the
target's unit (regression). A bad case is reported with its reason and the run goes on; a full
disk stops the run with one message (every later case would fail the same way), keeping what was
written, so a rerun after freeing space resumes with the unfinished cases. One run writes an output
folder at a time (`output_folder_lock`): a second would race the first over predictions.csv.
"""
from __future__ import annotations

import sys
import traceback
from collections import deque
from contextlib import nullcontext
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from fomo_nn.inference import export
from fomo_nn.inference.case_loading import read_case
from fomo_nn.inference.inputs import InferenceCase
from fomo_nn.inference.model_folder import ModelEnsemble
from fomo_nn.io import BadInputError
from fomo_nn.io.image_io import file_ending
from fomo_nn.preprocessing.case_preprocessing import preprocess_loaded
from fomo_nn.tasks import task_kind
from fomo_nn.utils.files import is_no_space, no_space_error
from fomo_nn.utils.run_lock import RunLock


@dataclass
class PredictionSettings:
    tta: bool | None = None  # None: mirroring TTA for segmentation only
    step: float = 0.5
    save_probabilities: bool = False
    overwrite: bool = False
    misaligned: str = "resample"
    num_threads: int = 2  # preprocessing/export threads beside the network
    progress: bool = True
    cpu_bf16: bool = False  # bf16 autocast on CPU too (CUDA always runs bf16); opt-in: outputs differ slightly

    def tta_for(self, task_type: str) -> bool:
        return task_kind(task_type).tta if self.tta is None else bool(self.tta)


@dataclass
class PreparedCase:
    case: InferenceCase
    data: np.ndarray  # (C, X, Y, Z) on the plans' grid
    properties: dict
    warnings: list[str] = field(default_factory=list)


@dataclass
class RunReport:
    predicted: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # outputs already there (rerun without --overwrite)
    failed: dict[str, str] = field(default_factory=dict)  # case id -> reason
    warnings: list[str] = field(default_factory=list)
    values: dict[str, object] = field(default_factory=dict)  # case id -> csv row (classification/regression)
    stopped: str | None = None  # why the run stopped before the last case ("no space left on <path>")
    unfinished: list[str] = field(default_factory=list)  # cases a rerun still has to predict after a stop

    @property
    def ok(self) -> bool:
        return not self.failed and self.stopped is None


def output_folder_lock(output_dir: str | Path) -> RunLock:
    """The one-writer lock of a prediction output folder (RunLockedError names the running holder)."""
    return RunLock(output_dir, "predict", "fomo_nn prediction", advice="or predict into another output folder")


def cpu_supports_bf16() -> bool:
    """Whether oneDNN runs bfloat16 natively here (emulated bf16 is slower than float32)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def describe_failure(case_id: str, error: BaseException) -> str:
    if isinstance(error, BadInputError):
        return f"case {case_id}: {error}"
    return f"case {case_id}: {type(error).__name__}: {error}"


class EnsemblePredictor:
    """Preprocess -> predict with every fold -> average -> export, for one model folder."""

    def __init__(self, ensemble: ModelEnsemble, settings: PredictionSettings | None = None):
        self.ensemble = ensemble
        self.plans = ensemble.plans
        self.settings = settings or PredictionSettings()
        self.device = next(ensemble.folds[0].network.parameters()).device
        self.cpu_bf16 = self.settings.cpu_bf16 and self.device.type == "cpu" and cpu_supports_bf16()
        if self.settings.cpu_bf16 and self.device.type == "cpu" and not self.cpu_bf16:
            print("[fomo_nn] warning: this CPU has no native bfloat16 (avx512_bf16/AMX); running in float32",
                  file=sys.stderr)

    @property
    def task_type(self) -> str:
        return self.plans.task_type

    # ---------------------------------------------------------------------------------- one case
    def prepare(self, case: InferenceCase, reference_index: int = 0) -> PreparedCase:
        if case.problem is not None:
            raise case.problem
        read = read_case(case.image_files, self.settings.misaligned, reference_index)
        data, _, properties = preprocess_loaded(read.loaded, self.plans)
        properties["case_id"] = case.case_id
        return PreparedCase(case, data, properties, read.warnings)

    def predict(self, data: np.ndarray):
        """The folds' mean: probabilities (K, X, Y, Z) / probabilities (K,) / a value."""
        tta = self.settings.tta_for(self.task_type)
        total = None
        tensor = torch.from_numpy(np.ascontiguousarray(data))
        precision = torch.autocast("cpu", dtype=torch.bfloat16) if self.cpu_bf16 else nullcontext()
        for fold in self.ensemble.folds:
            with precision:
                output = fold.predict(tensor, tta=tta, step=self.settings.step)
            if isinstance(output, np.ndarray) and total is not None:
                total += output
            else:
                total = output if total is None else total + output
        count = len(self.ensemble.folds)
        if isinstance(total, np.ndarray):
            total /= count
            return total
        return float(total) / count

    def export(self, prepared: PreparedCase, prediction, outputs: export.CaseOutputs) -> dict | None:
        return export.export_case(prediction, prepared.case.case_id, prepared.properties, self.plans, outputs)

    def outputs_for(self, case: InferenceCase, output_dir: Path) -> export.CaseOutputs:
        ending = file_ending(case.image_files[0]) if case.image_files else ".nii.gz"
        return export.case_outputs(output_dir, case.case_id, self.task_type, ending, self.settings.save_probabilities)

    # ---------------------------------------------------------------------------------- many cases
    def predict_folder_cases(self, cases: list[InferenceCase], output_dir: str | Path) -> RunReport:
        """Predict into `output_dir` (CASE outputs + predictions.csv for classification/regression), as its one
        writer."""
        with output_folder_lock(output_dir):
            return self._predict_folder_cases(cases, Path(output_dir))

    def _predict_folder_cases(self, cases: list[InferenceCase], output_dir: Path) -> RunReport:
        output_dir.mkdir(parents=True, exist_ok=True)
        csv_path = output_dir / export.CSV_NAME if export.writes_csv(self.plans) else None
        header = export.csv_header(self.plans)
        rows = export.read_predictions_csv(csv_path, header) if csv_path else {}
        order = [c.case_id for c in cases]

        def skip(case: InferenceCase, outputs: export.CaseOutputs) -> bool:
            return outputs.done() and (csv_path is None or case.case_id in rows)

        def on_row(case_id: str, row: dict) -> None:
            rows[case_id] = row
            export.write_predictions_csv(csv_path, rows, header, order)

        report = self.run(cases, lambda case: self.outputs_for(case, output_dir), skip=skip,
                          on_row=on_row if csv_path else None)
        if csv_path is not None and rows and report.stopped is None:
            try:
                export.write_predictions_csv(csv_path, rows, header, order)
            except OSError as error:
                if not is_no_space(error):
                    raise
                self._stop(report, no_space_error(error, csv_path), [])
                self._announce_stop(report)
        return report

    def run(self, cases: list[InferenceCase], outputs_for: Callable[[InferenceCase], export.CaseOutputs],
            skip: Callable | None = None, on_row: Callable | None = None, reference_index: int = 0) -> RunReport:
        """The pipelined loop: preprocessing ahead, export behind, the network in this thread."""
        report = RunReport()
        todo = []
        for case in cases:
            outputs = outputs_for(case)
            if not self.settings.overwrite and (skip(case, outputs) if skip else outputs.done()):
                report.skipped.append(case.case_id)
            else:
                todo.append((case, outputs))
        if report.skipped:
            print(f"[fomo_nn] {len(report.skipped)} case(s) already predicted, skipped (--overwrite to redo)",
                  file=sys.stderr)
        lookahead = max(1, self.settings.num_threads - 1)
        with ThreadPoolExecutor(max_workers=max(1, self.settings.num_threads)) as pool:
            queued: deque[tuple[InferenceCase, export.CaseOutputs, Future]] = deque()
            exports: list[tuple[InferenceCase, export.CaseOutputs, Future]] = []
            pending = iter(todo)

            def refill():
                while len(queued) < lookahead:
                    item = next(pending, None)
                    if item is None:
                        return
                    queued.append((*item, pool.submit(self.prepare, item[0], reference_index)))

            refill()
            progress = tqdm(total=len(todo), desc="predicting", unit="case", disable=not self.settings.progress)
            while queued and report.stopped is None:
                case, outputs, future = queued.popleft()
                refill()
                try:
                    prepared = future.result()
                    for warning in prepared.warnings:
                        self._warn(report, f"case {case.case_id}: {warning}")
                    prediction = self.predict(prepared.data)
                except Exception as error:  # one bad case must not stop the others
                    if is_no_space(error):
                        self._stop(report, no_space_error(error, outputs.primary.parent), [case.case_id])
                        break
                    self._fail(report, case.case_id, error)
                    progress.update()
                    continue
                exports.append((case, outputs, pool.submit(self.export, prepared, prediction, outputs)))
                del prepared, prediction
                self._collect(exports, report, on_row, block=False)
                progress.update()
            for case, _, future in queued:
                future.cancel()
            if report.stopped is not None:
                report.unfinished.extend(c.case_id for c, _, _ in queued)
                report.unfinished.extend(c.case_id for c, _ in pending)
            self._collect(exports, report, on_row, block=True)
            progress.close()
        if report.stopped is not None:
            self._announce_stop(report)
        return report

    def _collect(self, exports: list, report: RunReport, on_row, block: bool) -> None:
        for item in list(exports):
            case, outputs, future = item
            if not block and not future.done():
                continue
            exports.remove(item)
            try:
                row = future.result()
                if row is not None and on_row is not None:
                    on_row(case.case_id, row)
            except Exception as error:
                if is_no_space(error):
                    self._stop(report, no_space_error(error, outputs.primary.parent), [case.case_id])
                    continue
                self._fail(report, case.case_id, error)
                continue
            report.predicted.append(case.case_id)
            if row is not None:
                report.values[case.case_id] = row

    @staticmethod
    def _warn(report: RunReport, message: str) -> None:
        report.warnings.append(message)
        tqdm.write(f"[fomo_nn] warning: {message}", file=sys.stderr)

    @staticmethod
    def _stop(report: RunReport, error: OSError, unfinished: list[str]) -> None:
        """A full disk: remember the first message; the case(s) it hit are left for a rerun."""
        if report.stopped is None:
            report.stopped = str(error)
        report.unfinished.extend(c for c in unfinished if c not in report.unfinished)

    @staticmethod
    def _announce_stop(report: RunReport) -> None:
        tqdm.write(f"[fomo_nn] stopped: {report.stopped}; {len(report.predicted)} case(s) written, "
                   f"{len(report.unfinished)} not predicted. Free space and rerun: finished cases are skipped",
                   file=sys.stderr)

    @staticmethod
    def _fail(report: RunReport, case_id: str, error: Exception) -> None:
        message = describe_failure(case_id, error)
        report.failed[case_id] = message
        tqdm.write(f"[fomo_nn] FAILED {message}", file=sys.stderr)
        if not isinstance(error, (BadInputError, ValueError)):
            tqdm.write(traceback.format_exc(), file=sys.stderr)
