"""Representation probes: frozen encoder features -> simple models, scored in and out of domain."""
from fomo_nn.probing.encoders import FrozenEncoder, load_frozen_encoder
from fomo_nn.probing.features import FEATURE_MODES, POOLINGS, extract_features, pooled_features
from fomo_nn.probing.linear_probes import PROBE_MODELS, fit_probe

__all__ = ["FrozenEncoder", "load_frozen_encoder", "FEATURE_MODES", "POOLINGS", "extract_features",
           "pooled_features", "PROBE_MODELS", "fit_probe"]
