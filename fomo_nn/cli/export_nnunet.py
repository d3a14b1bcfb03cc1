"""fomo_nn_export_nnunet MODEL_DIR OUT: a finetuned segmentation model as an nnU-Net v2 model folder.

MODEL_DIR is fomo_nn_results/DatasetNNN_Name/<trainer>__<plans>__<configuration>[__<tag>] (all folds that
have the checkpoint, or -f). OUT gets plans.json, dataset.json and fold_K/checkpoint_final.pth for
nnunetv2's nnUNetv2_predict_from_modelfolder -m OUT, or, placed at
nnUNet_results/DatasetNNN_Name/nnUNetTrainer__<plans>__<configuration>, for nnUNetv2_predict -d NNN -p <plans>.
Inputs are NIfTI (CASE_0000.nii.gz, one file per channel in the plans' channel order).
The logic lives in fomo_nn.export.nnunet_folder.
"""
from __future__ import annotations

import argparse
import sys

from fomo_nn.export.nnunet_folder import export_nnunet_model
from fomo_nn.inference.model_folder import CHECKPOINT_CHOICES
from fomo_nn.utils.errors import BadInputError
from fomo_nn.utils.files import NoSpaceLeftError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fomo_nn_export_nnunet", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", help="fomo_nn model folder (holding fold_K/checkpoint_final.pth)")
    parser.add_argument("out", help="nnU-Net model folder to write")
    parser.add_argument("-f", "--folds", nargs="+", default=None, help="folds to export (default: all present)")
    parser.add_argument("--checkpoint", choices=CHECKPOINT_CHOICES, default="final",
                        help="which fomo_nn checkpoint to export (written as nnU-Net's checkpoint_final.pth)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        export = export_nnunet_model(args.model_dir, args.out, args.folds, args.checkpoint, args.overwrite)
    except (BadInputError, NoSpaceLeftError) as error:
        print(f"fomo_nn_export_nnunet: error: {error}", file=sys.stderr)
        return 2
    print(f"{export.output}: nnU-Net v2 model ({export.architecture}, configuration {export.configuration}, "
          f"folds {', '.join(export.folds)}); nnU-Net's network matches fomo_nn's logits within "
          f"{export.max_logit_difference:.2g}")
    print(f"predict: nnUNetv2_predict_from_modelfolder -i IN -o OUT -m {export.output} -f {' '.join(export.folds)}")
    print(f"or place it at $nnUNet_results/{export.dataset_name}/{export.model_folder_name} and run "
          f"nnUNetv2_predict -i IN -o OUT -d {export.dataset_name} -c {export.configuration} -p {export.plans_name} "
          f"-f {' '.join(export.folds)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
