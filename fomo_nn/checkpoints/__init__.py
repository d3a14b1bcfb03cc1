"""Checkpoints in and out: one home for reading any checkpoint file and for the training checkpoint layout.

- `loading.load_checkpoint_file`: the only place fomo_nn calls torch.load (weights_only=True; `.safetensors`
  through the safetensors library);
- `registry.read_checkpoint`: load once, detect the format (one row per format in `formats/`), convert to a
  `record.CheckpointRecord` (encoder weights in fomo_nn's names, the network it needs, the preprocessing it
  expects, provenance);
- `training_state`: the keys and layout of fomo_nn's own training checkpoints (save, resume, RNG state).

Layer: below planning/preprocessing/training/inference/probing, above networks and plans.
"""
