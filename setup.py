from setuptools import find_packages, setup

# Console scripts are registered only once their command works end to end.
CONSOLE_SCRIPTS = [
]

setup(
    name="fomo_nn",
    version="0.1.0",
    description="Self-configuring framework for 3D brain-MRI foundation models (FOMO25 setting)",
    packages=find_packages(include=["fomo_nn", "fomo_nn.*", "dataset_conversion", "dataset_conversion.*"]),
    python_requires=">=3.10",
    install_requires=[
        "torch>=2.3",
        "numpy>=1.24",
        "scipy>=1.10",
        "nibabel>=5.0",
        "SimpleITK>=2.2",
        "batchgenerators>=0.25",
        "batchgeneratorsv2>=0.2",
        "dynamic-network-architectures>=0.4",
        "acvl-utils>=0.2",
        "matplotlib>=3.6",
        "tqdm>=4.60",
    ],
    extras_require={"test": ["pytest>=7", "nilearn>=0.10", "scikit-learn>=1.2"]},
    entry_points={"console_scripts": CONSOLE_SCRIPTS},
)
