"""The trainer modules that ship with fomo_nn; importing one registers its trainers (@register_trainer)."""
import fomo_nn.training.finetuning.classification  # noqa: F401  classification
import fomo_nn.training.finetuning.regression  # noqa: F401  regression
import fomo_nn.training.finetuning.segmentation  # noqa: F401  segmentation
import fomo_nn.training.pretraining.contrastive  # noqa: F401  contrastive
import fomo_nn.training.pretraining.dino  # noqa: F401  dino
import fomo_nn.training.pretraining.hybrid  # noqa: F401  hybrid
import fomo_nn.training.pretraining.mae  # noqa: F401  mae
import fomo_nn.training.pretraining.vae  # noqa: F401  vae
