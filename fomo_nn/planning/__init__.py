"""Self-configuration: dataset fingerprint -> plans.json (spacing, patch, topology, batch, normalization).

Import the submodules directly (fingerprint, planner, plans_like, steps); this package stays light so
spawned preprocessing workers do not import torch.
"""
