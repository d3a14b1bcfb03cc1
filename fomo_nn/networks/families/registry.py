"""The table of encoder families: one line per family (its file in this folder defines FAMILY)."""
from __future__ import annotations

import difflib

from fomo_nn.networks.families import maxpool_unet, plain_conv, residual, residual_unet_encoder
from fomo_nn.networks.families.family import NetworkFamily

NETWORK_FAMILIES: dict[str, NetworkFamily] = {family.name: family for family in (
    plain_conv.FAMILY,
    residual.FAMILY,
    maxpool_unet.FAMILY,
    residual_unet_encoder.FAMILY,
)}
FAMILY_NAMES = tuple(NETWORK_FAMILIES)
PLANNABLE_FAMILIES = tuple(name for name, family in NETWORK_FAMILIES.items() if family.plannable)


def network_family(name: str) -> NetworkFamily:
    """The family called `name`; unknown -> ValueError naming the nearest and all of them."""
    if name in NETWORK_FAMILIES:
        return NETWORK_FAMILIES[name]
    nearest = difflib.get_close_matches(str(name), FAMILY_NAMES, n=1, cutoff=0.4)
    hint = f"; did you mean {nearest[0]!r}?" if nearest else ""
    raise ValueError(f"unknown network family (encoder) {name!r}{hint} (known: {', '.join(FAMILY_NAMES)})")
