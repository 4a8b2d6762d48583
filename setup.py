"""Installs the flanmix package (`pipelines/`, `trainer/`) and the `flanmix` console command.

Versions here are ranges that say what the code needs; `constraints.txt` pins the exact,
known-good set that `make` installs (`pip install -c constraints.txt -e .[test]`).
"""
from setuptools import find_packages, setup

INSTALL_REQUIRES = [
    "apache-beam[gcp,aws]>=2.77,<2.78",
    "tensorflow>=2.21,<2.22",
    "seqio==0.0.20",
    "datasets>=5,<6",
    "jinja2>=3.1,<3.2",
    "pyarrow>=20,<26",
    # sentencepiece 0.2.3 needs protobuf 7, which TF and Beam do not accept.
    "sentencepiece>=0.2,<0.2.3",
    "protobuf>=5,<7",
    "pyyaml>=6",
    "jsonschema>=4.20",
    "google-crc32c>=1.5",
    "numpy>=1.26,<2.5",
    "psutil>=5.9",
]

EXTRAS = {
    "test": [
        "pytest>=8",
        "moto[server]>=5",
        "gcp-storage-emulator>=2026.1",
        "duckdb>=1.0",
        "polars>=1.0",
    ],
    "trainer": ["jax>=0.10", "flax>=0.12", "optax>=0.2", "orbax-checkpoint>=0.12"],
}

setup(
    name="flanmix",
    version="0.1.0",
    description="Build Flan-Collection-style instruction-tuning corpora with Apache Beam.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["pipelines", "pipelines.*", "trainer", "trainer.*"]),
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["flanmix=pipelines.cli:main"]},
)
