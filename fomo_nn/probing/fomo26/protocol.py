"""fomo_nn_probe --protocol fomo26: `<ptid>.npy` embeddings + a subjects CSV -> predictions.json, eval_report.json.

As fomo-lp's `run_lp_fomo` (pipeline/lp_fomo.py @ f915d5a): the CSV is the single source of ids, classes
(sorted class names -> 0..C-1) and the two demographic variables; the split is made on every CSV subject;
every training and validation subject needs its embedding; a test subject without one is kept and scored
as the worst prediction (fomo-metrics' rule), so a missing embedding costs AUROC, F1 and fairness.
Embeddings are read like theirs (any array, flattened to float32) but one that is empty, not finite or of
another length than the others is refused, naming the file.
"""
from __future__ import annotations

import csv
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from fomo_nn.utils.errors import BadInputError
from fomo_nn.probing.fomo26.fairness import bin_continuous, fairness_report, normalize_categorical
from fomo_nn.probing.fomo26.linear_probe import DEFAULT_LEARNING_RATES, Sweep, fit_sweep
from fomo_nn.probing.fomo26.split import DEFAULT_COUNTS, split_subjects
from fomo_nn.utils.files import write_json_atomic

log = logging.getLogger(__name__)
DEFAULT_FEATURE1_BINS = ((25.0, 0), (50.0, 1), (75.0, 2), (1000.0, 3))  # fomo-lp's README example (age)


@dataclass
class Fomo26ProbeRequest:
    embeddings: str
    subjects_csv: str
    output: str
    id_column: str = "ptid"
    label_column: str = "selected_cohort"
    feature1_column: str = "age"  # continuous, binned; also the split's strata (fomo-lp FEATURE1_CSV_COL)
    feature2_column: str = "sex"  # categorical (FEATURE2_CSV_COL)
    feature1_bins: tuple = DEFAULT_FEATURE1_BINS
    counts: tuple = DEFAULT_COUNTS  # train, val, test per class
    learning_rates: tuple = DEFAULT_LEARNING_RATES
    epochs: int = 20
    batch_size: int = 64
    seed: int = 42


def read_subjects(path: str | Path, request: Fomo26ProbeRequest) -> list[dict]:
    """The CSV rows; the id and label columns must exist and ids must be unique."""
    path = Path(path)
    try:
        with open(path, newline="") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError) as error:
        raise BadInputError(path, f"cannot read the subjects CSV ({error})") from None
    if not rows:
        raise BadInputError(path, "the subjects CSV has no rows")
    missing = [c for c in (request.id_column, request.label_column) if c not in rows[0]]
    if missing:
        raise BadInputError(path, f"lacks the column(s) {missing}; it has {sorted(rows[0])}")
    ids = [row[request.id_column] for row in rows]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise BadInputError(path, f"subject id(s) listed twice: {duplicates[:5]}")
    return rows


def read_embedding(path: Path) -> np.ndarray:
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise BadInputError(path, f"not a readable .npy array ({error})") from None
    vector = np.asarray(array, dtype=np.float32).ravel()
    if vector.size == 0:
        raise BadInputError(path, "empty embedding")
    if not np.isfinite(vector).all():
        raise BadInputError(path, "embedding holds NaN or infinite values")
    return vector


def read_embeddings(folder: str | Path, ids: list[str]) -> dict[str, np.ndarray]:
    """{id: vector} for the ids whose `<id>.npy` exists; all of one length."""
    folder = Path(folder)
    if not folder.is_dir():
        raise BadInputError(folder, "embeddings folder not found")
    vectors = {i: read_embedding(folder / f"{i}.npy") for i in ids if (folder / f"{i}.npy").is_file()}
    lengths = {v.size for v in vectors.values()}
    if len(lengths) > 1:
        first = next(iter(vectors.values())).size
        odd = next(i for i, v in vectors.items() if v.size != first)
        raise BadInputError(folder / f"{odd}.npy", f"length {vectors[odd].size}, other embeddings have {first}")
    return vectors


def run_fomo26_probe(request: Fomo26ProbeRequest) -> dict:
    rows = read_subjects(request.subjects_csv, request)
    ids = [row[request.id_column] for row in rows]
    labels_text = {row[request.id_column]: row[request.label_column] for row in rows}
    feature1 = {row[request.id_column]: row.get(request.feature1_column, "") for row in rows}
    feature2 = {row[request.id_column]: row.get(request.feature2_column, "") for row in rows}
    classes = sorted(set(labels_text.values()))
    if len(classes) < 2:
        raise BadInputError(request.subjects_csv, f"column {request.label_column!r} holds one class only: {classes}")
    label = {i: classes.index(c) for i, c in labels_text.items()}
    vectors = read_embeddings(request.embeddings, ids)
    if not vectors:
        raise BadInputError(request.embeddings, f"holds none of the {len(ids)} subjects' <ptid>.npy embeddings")
    split = split_subjects(labels_text, feature1, request.counts, request.seed)
    absent = [i for i in split.train + split.val if i not in vectors]
    if absent:
        raise BadInputError(request.embeddings, f"{len(absent)} training/validation subject(s) have no embedding "
                                                f"(they cannot be scored as missing): {sorted(absent)[:10]}")
    missing_test = [i for i in split.test if i not in vectors]
    if missing_test:
        log.warning("%d test subject(s) have no embedding and score as the worst prediction: %s",
                    len(missing_test), sorted(missing_test)[:10])
    sweep = Sweep(tuple(request.learning_rates), request.epochs, request.batch_size, request.seed)
    probe = fit_sweep(np.stack([vectors[i] for i in split.train]), np.array([label[i] for i in split.train]),
                      np.stack([vectors[i] for i in split.val]), np.array([label[i] for i in split.val]),
                      len(classes), sweep)
    present = [i for i in split.test if i in vectors]
    scores = probe.scores(np.stack([vectors[i] for i in present])) if present else np.zeros((0, len(classes)))
    by_id = {i: [float(s) for s in row] for i, row in zip(present, scores)}
    predictions = {i: {"prediction": int(np.argmax(by_id[i])), "label": label[i], "scores": by_id[i]} for i in present}
    test_labels = [label[i] for i in split.test]
    test_scores = [by_id.get(i) for i in split.test]
    groups = {"feature2": [normalize_categorical(feature2[i]) for i in split.test],
              "feature1_bin": [bin_continuous(feature1[i], request.feature1_bins) for i in split.test]}
    report = {"embeddings_dir": str(request.embeddings), "feature_dim": int(next(iter(vectors.values())).size),
              "classes": classes, "n_train": len(split.train), "n_val": len(split.val), "n_test": len(split.test),
              "n_test_missing": len(missing_test), "best_lr": probe.best_lr,
              "best_val_auroc": probe.validation_auroc[probe.best_lr],
              "validation_auroc": {str(lr): v for lr, v in probe.validation_auroc.items()},
              "variables": {"feature1": request.feature1_column, "feature2": request.feature2_column},
              "protocol": {k: v for k, v in asdict(request).items() if k not in ("embeddings", "output")},
              **fairness_report(test_labels, test_scores, groups)}
    output = Path(request.output)
    write_json_atomic(output / "predictions.json", {**predictions, "best_head_lr": probe.best_lr})
    write_json_atomic(output / "eval_report.json", report)
    return report


def format_report(report: dict) -> str:
    overall, fairness = report["overall"], report["fairness_score"]
    number = lambda v: "–" if v is None else f"{v:.4f}"  # noqa: E731
    lines = [f"subjects: train {report['n_train']}, val {report['n_val']}, test {report['n_test']} "
             f"({report['n_test_missing']} without embedding); dim {report['feature_dim']}; "
             f"best lr {report['best_lr']:g} (val AUROC {report['best_val_auroc']:.4f})",
             "| metric | test | fairness score |", "|---|---|---|"]
    lines += [f"| {name} | {number(overall[name])} | {number(fairness[name]['score'])} |" for name in overall]
    return "\n".join(lines)
