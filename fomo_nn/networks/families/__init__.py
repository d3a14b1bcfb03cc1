"""Encoder families as data (one record each) and the named presets of published foundation models."""
from fomo_nn.networks.families.family import NetworkFamily
from fomo_nn.networks.families.presets import PRESET_NAMES, network_preset
from fomo_nn.networks.families.registry import FAMILY_NAMES, NETWORK_FAMILIES, PLANNABLE_FAMILIES, network_family

__all__ = ["FAMILY_NAMES", "NETWORK_FAMILIES", "NetworkFamily", "PLANNABLE_FAMILIES", "PRESET_NAMES",
           "network_family", "network_preset"]
