"""Crop, normalize, resample and store cases; parallel, resumable and shardable over a dataset.

For inference: `preprocess_case(image_files, plans)` and `restore_to_original(array, properties, is_label)`.
"""
from fomo_nn.preprocessing.case_preprocessing import preprocess_case, restore_to_original

__all__ = ["preprocess_case", "restore_to_original"]
