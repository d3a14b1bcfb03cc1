"""One file per checkpoint format, each defining `FORMAT` (a CheckpointFormat); the table is registry.py."""
