"""The cases of a raw dataset as the preprocessing steps see them, plus how problems are reported."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fomo_nn.datasets.cases import Case, case_id_problem, list_cases
from fomo_nn.datasets.dataset_json import DatasetSpec, load_dataset_json
from fomo_nn.io import BadInputError


@dataclass
class CaseProblem:
    """One bad case: which file and what is wrong with it."""

    case_id: str | None
    file: str
    problem: str

    def __str__(self) -> str:
        prefix = f"[{self.case_id}] " if self.case_id else ""
        return f"{prefix}{self.file}: {self.problem}"

    @classmethod
    def from_error(cls, case_id: str | None, error: BaseException) -> "CaseProblem":
        if isinstance(error, BadInputError):
            return cls(case_id, error.path, error.problem)
        return cls(case_id, "(case)", f"unexpected {type(error).__name__}: {error}")


def format_problems(problems: list[CaseProblem], heading: str) -> str:
    lines = [f"{heading}: {len(problems)} problem(s)"]
    lines += [f"  - {problem}" for problem in problems]
    return "\n".join(lines)


def dataset_cases(raw_dir: str | Path) -> tuple[DatasetSpec, list[Case], list[CaseProblem]]:
    """(spec, usable cases sorted by id, problems found while listing). dataset.json problems raise."""
    raw_dir = Path(raw_dir)
    spec = load_dataset_json(raw_dir)
    cases, errors = list_cases(raw_dir, spec, strict=False)
    problems = [CaseProblem.from_error(None, error) for error in errors]
    usable, seen = [], set()
    for case in sorted(cases, key=lambda c: c.case_id):
        name_problem = case_id_problem(case.case_id)
        if name_problem:
            problems.append(CaseProblem(case.case_id, case.image_files[0], name_problem))
        elif case.case_id in seen:
            problems.append(CaseProblem(case.case_id, case.image_files[0], "case id is used twice"))
        else:
            seen.add(case.case_id)
            usable.append(case)
    return spec, usable, problems
