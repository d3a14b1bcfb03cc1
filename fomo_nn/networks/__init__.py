"""Networks built from plans: encoders, finetuning and pretraining models, weight transfer."""
from fomo_nn.networks.adaptation import adaptation_record, build_from_record
from fomo_nn.networks.backbone import EncoderModel
from fomo_nn.networks.builders import (
    PRETRAINING_METHODS,
    build_architecture,
    build_finetuning_network,
    build_pretraining_network,
)
from fomo_nn.networks.encoders import build_encoder, stem_keys, stem_weight_keys
from fomo_nn.networks.finetuning import ClassificationNet, PooledHeadNet, RegressionNet, SegmentationNet
from fomo_nn.networks.fusion import SequenceFusion, expand_stem_weights
from fomo_nn.networks.heads import ProjectionHead, global_average_pool
from fomo_nn.networks.inspection import count_parameters, parameters_by_part
from fomo_nn.networks.pretraining import EmbeddingNet, HybridNet, MAENet, MaskToken
from fomo_nn.networks.vae import VAEHybridNet, reparameterize
from fomo_nn.networks.weights import EncoderMismatchError, encoder_state_dict, load_encoder_weights

__all__ = [
    "PRETRAINING_METHODS", "ClassificationNet", "EmbeddingNet", "EncoderMismatchError", "EncoderModel", "HybridNet",
    "MAENet", "MaskToken", "PooledHeadNet", "ProjectionHead", "RegressionNet", "SegmentationNet", "SequenceFusion",
    "VAEHybridNet", "adaptation_record", "build_architecture", "build_encoder", "build_finetuning_network",
    "build_from_record", "build_pretraining_network", "count_parameters", "encoder_state_dict",
    "expand_stem_weights", "global_average_pool", "load_encoder_weights", "parameters_by_part", "reparameterize",
    "stem_keys", "stem_weight_keys",
]
