from setuptools import find_packages, setup

# Console scripts are registered only once their command works end to end.
CONSOLE_SCRIPTS = [
    "fomo_nn_demo = fomo_nn.cli.demo:main",
    "fomo_nn_generate_sample_data = fomo_nn.cli.generate_sample_data:main",
    "fomo_nn_convert = fomo_nn.cli.convert:main",
    "fomo_nn_plan_and_preprocess = fomo_nn.cli.plan_and_preprocess:main",
    "fomo_nn_extract_fingerprint = fomo_nn.cli.plan_and_preprocess:main_fingerprint",
    "fomo_nn_plan = fomo_nn.cli.plan_and_preprocess:main_plan",
    "fomo_nn_preprocess = fomo_nn.cli.plan_and_preprocess:main_preprocess",
    "fomo_nn_show_augmentations = fomo_nn.cli.show_augmentations:main",
    "fomo_nn_train = fomo_nn.cli.train:main",
    "fomo_nn_export_encoder = fomo_nn.cli.export_encoder:main",
    "fomo_nn_export_nnunet = fomo_nn.cli.export_nnunet:main",
    "fomo_nn_predict = fomo_nn.cli.predict:main",
    "fomo_nn_evaluate = fomo_nn.cli.evaluate:main",
    "fomo_nn_rank = fomo_nn.cli.rank:main",
    "fomo_nn_probe = fomo_nn.cli.probe:main",
    "fomo_nn_embed = fomo_nn.cli.embed:main",
]

setup(
    name="fomo_nn",
    version="0.1.0",
    description="Self-configuring framework for 3D brain-MRI foundation models (FOMO25 and FOMO26 settings)",
    packages=find_packages(include=["fomo_nn", "fomo_nn.*", "dataset_conversion", "dataset_conversion.*"]),
    python_requires=">=3.10",
    install_requires=[
        "torch>=2.3",
        "numpy>=1.24",
        "scipy>=1.10",
        "nibabel>=5.0",
        "SimpleITK>=2.2",
        "batchgeneratorsv2>=0.2",
        "dynamic-network-architectures>=0.4",  # pulls timm -> torchvision -> its torch: see README, GPU install
        "matplotlib>=3.6",
        "tqdm>=4.60",
        "scikit-learn>=1.2",  # the probes (fomo_nn.probing) and the probe-initialised heads
        "blosc2>=4.0",  # the compressed store of preprocessed cases (fomo_nn.preprocessing.array_store)
        # the max-pool U-Net and ResEnc encoder families of asparagus / the FOMO25 baseline are built with its
        # classes (fomo_nn.networks.families); pure python, its dependencies are ours; keys fixed by 0.3.x
        "gardening-tools>=0.3.5,<0.4",
        "safetensors>=0.4",  # model.safetensors checkpoints (fomo_nn.checkpoints.loading; already pulled in through timm)
        "PyYAML>=5.4",  # asparagus checkpoints: the hydra/config.yaml beside them (already pulled in through timm)
    ],
    # surface-distance: DeepMind's NSD, the reference tests/test_evaluation_surfaces.py checks ours against
    extras_require={"test": ["pytest>=7", "nilearn>=0.10", "surface-distance==0.1", "nnunetv2==2.8.1",
                              "pytorch-lightning==2.6.6"]},
    entry_points={"console_scripts": CONSOLE_SCRIPTS},
)
