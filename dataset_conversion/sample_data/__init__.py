"""Synthetic FOMO-like brain MRI: the stand-in for the private FOMO25 data in the demo and the tests.

    generate_sample_data(out_dir, seed=0, size="small", num_workers=1) -> metadata dict
"""
from dataset_conversion.sample_data.config import SIZE_PRESETS, SampleDataConfig, config_for_size
from dataset_conversion.sample_data.generate import METADATA_FILE, generate_sample_data

__all__ = ["SIZE_PRESETS", "SampleDataConfig", "config_for_size", "generate_sample_data", "METADATA_FILE"]
