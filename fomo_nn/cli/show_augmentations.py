"""fomo_nn_show_augmentations -d N: a PNG grid of original vs augmented slices of a preprocessed case."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from fomo_nn.utils.errors import BadInputError


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="fomo_nn_show_augmentations", description=__doc__)
    parser.add_argument("-d", "--dataset", required=True, help="dataset id or name (preprocessed)")
    parser.add_argument("-o", "--output", help="PNG path (default: <preprocessed dataset>/augmentation_preview.png)")
    parser.add_argument("--case", help="case id (default: the first preprocessed case)")
    parser.add_argument("--family", help="preview another preset (pretraining_reconstruction, pretraining_contrastive, "
                                         "classification, regression, segmentation) instead of the plans' own")
    parser.add_argument("--samples", type=int, default=4, help="augmented draws per row")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from fomo_nn import paths
    from fomo_nn.augmentation import default_augmentation_plan
    from fomo_nn.augmentation.preview import render_augmentation_preview
    from fomo_nn.plans import load_plans
    from fomo_nn.preprocessing.case_store import list_cases

    try:
        folder = paths.preprocessed_dataset_dir(args.dataset)
        plans = load_plans(folder)
        cases = list_cases(folder / plans.configuration, plans)
        if args.case:
            cases = [c for c in cases if c.case_id == args.case]
        if not cases:
            raise BadInputError(folder / plans.configuration, f"no preprocessed case {args.case or ''}".strip())
        case = cases[0]
        aug_plan = default_augmentation_plan(args.family) if args.family else plans.augmentation
        seg = case.seg()
        out = Path(args.output) if args.output else folder / "augmentation_preview.png"
        render_augmentation_preview(np.asarray(case.data()), aug_plan, plans.patch_size, str(out), seed=args.seed,
                                    n_samples=args.samples, segmentation=None if seg is None else np.asarray(seg))
    except (BadInputError, FileNotFoundError, ValueError) as error:
        print(f"fomo_nn_show_augmentations: error: {error}", file=sys.stderr)
        return 1
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
