"""Which files make each case of an input folder, in the model's channel order.

Two layouts are accepted:
- raw (nnU-Net) layout: `IN/CASE_0000.nii.gz`, `IN/CASE_0001.nii.gz`, ... (channel index = model channel);
- FOMO task layout: `IN/sub_X/ses_1/<sequence>.nii.gz` (or `IN/preprocessed/sub_X/...`, or no session
  level; FOMO26's `sub-XX/ses-01/` alike), where each model channel is found by its sequence name with
  the challenges' rules (fomo_nn.challenges.sequences: `swi_or_t2s` takes `swi`, else `t2s`; channel `t1`
  reads FOMO25's t1 or FOMO26's t1w, `t2` FOMO25's t2 or FOMO26's t2w).
A case whose files cannot be found carries a BadInputError instead of failing the whole run.
"""
from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from fomo_nn.challenges.layout import find_task_subjects, hidden_folders_note, list_subjects, natural_key
from fomo_nn.challenges.sequences import channel_candidates, pick_sequence
from fomo_nn.utils.errors import BadInputError
from fomo_nn.io.image_io import SUPPORTED_ENDINGS

_RAW_NAME = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})(?P<ending>" +
                       "|".join(re.escape(e) for e in SUPPORTED_ENDINGS) + r")$", re.IGNORECASE)


@dataclass
class InferenceCase:
    case_id: str
    image_files: list[str]  # one per model channel, in the model's order (complete when problem is None)
    problem: BadInputError | None = None
    sequences: dict[str, str] = field(default_factory=dict)  # channel name -> file stem used (FOMO layout)


def detect_layout(input_dir: Path) -> str:
    """'raw' when CASE_XXXX files lie in the folder, 'fomo' when it holds subject folders."""
    entries = [e for e in os.scandir(input_dir) if not e.name.startswith(".")]
    if any(e.is_file() and _RAW_NAME.match(e.name) for e in entries):
        return "raw"
    if any(e.is_dir() for e in entries):
        return "fomo"
    raise BadInputError(input_dir, "no cases found: expected CASE_0000.nii.gz files (raw layout) or "
                                   "sub_X/ses_1/<sequence>.nii.gz folders (FOMO layout)")


def raw_layout_cases(input_dir: Path, channel_names: list[str]) -> list[InferenceCase]:
    found: dict[str, dict[int, str]] = {}
    for entry in os.scandir(input_dir):
        match = _RAW_NAME.match(entry.name)
        if match and entry.is_file():
            found.setdefault(match["case"], {})[int(match["channel"])] = entry.path
    cases = []
    for case_id in sorted(found, key=natural_key):
        channels = found[case_id]
        missing = [f"{c:04d} ({name})" for c, name in enumerate(channel_names) if c not in channels]
        extra = sorted(c for c in channels if c >= len(channel_names))
        problem = None
        if missing:
            problem = BadInputError(input_dir / f"{case_id}_XXXX", f"case {case_id} lacks channel file(s) "
                                    f"{', '.join(missing)}; the model takes {', '.join(channel_names)}")
        elif extra:
            problem = BadInputError(channels[extra[0]], f"case {case_id} has channel {extra[0]:04d} but the model "
                                    f"takes {len(channel_names)} channels ({', '.join(channel_names)})")
        files = [channels[c] for c in range(len(channel_names)) if c in channels]
        cases.append(InferenceCase(case_id, files, problem))
    return cases


def subject_case(subject, channel_names: list[str], subject_dir: Path | None = None) -> InferenceCase:
    """Map one FOMO-layout subject's sequences onto the model channels."""
    if subject.problem is not None:
        return InferenceCase(subject.subject, [], subject.problem)
    files, sequences, missing = [], {}, []
    for name in channel_names:
        stem = pick_sequence(name, subject.images)
        if stem is None:
            missing.append(" or ".join(channel_candidates(name)))
            continue
        try:
            files.append(str(subject.image(stem)))
        except BadInputError as error:  # flair.nii beside flair.nii.gz: which one is meant is unknown
            return InferenceCase(subject.subject, [], BadInputError(error.path, f"case {subject.subject}: "
                                                                                f"{error.problem}"))
        sequences[name] = stem
    problem = None
    if missing:
        folder = subject.session_dir or subject_dir or Path(subject.subject)
        present = ", ".join(sorted(subject.images)) or "no images"
        problem = BadInputError(folder, f"case {subject.subject}: missing sequence {', '.join(missing)} "
                                        f"(found: {present})")
    return InferenceCase(subject.subject, files, problem, sequences)


def fomo_layout_cases(input_dir: Path, channel_names: list[str]) -> list[InferenceCase]:
    root = input_dir / "preprocessed" if (input_dir / "preprocessed").is_dir() else input_dir
    listing = find_task_subjects(input_dir) if root != input_dir else list_subjects(input_dir)
    note = hidden_folders_note(listing.hidden)
    if note:  # a hidden .sub_3 is never predicted: say so instead of leaving a case out unseen
        print(f"note: {note}", file=sys.stderr)
    return [subject_case(s, channel_names, root / s.subject) for s in listing.subjects]


def discover_cases(input_dir: str | os.PathLike, channel_names: list[str]) -> list[InferenceCase]:
    """Every case of `input_dir` (either layout), each with its files or the reason it cannot run."""
    input_dir = Path(input_dir)
    if not input_dir.is_dir():
        raise BadInputError(input_dir, "input folder does not exist")
    if detect_layout(input_dir) == "raw":
        return raw_layout_cases(input_dir, channel_names)
    return fomo_layout_cases(input_dir, channel_names)
