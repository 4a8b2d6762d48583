"""Installs the flanmix package (`pipelines/`, `trainer/`, `flanmix_corpus/`) and the `flanmix` console command.

Versions here are ranges that say what the code needs; `constraints.txt` pins the exact,
known-good set that `make` installs (`pip install -c constraints.txt -e .[test]`).

Every sdist and wheel also carries the project's data (schemas/, templates/, task_catalog/ copied into
`pipelines/_data/`, and the default vocabulary in `pipelines/assets/`), so a Beam worker that installs
the package (Dataflow stages `python setup.py sdist` when given `--setup_file`, which `flanmix build`
passes by default) never depends on the launcher's checkout. `pipelines.resources` finds the copy.
"""
import shutil
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
DATA_DIRS = ("schemas", "templates", "task_catalog")  # keep in step with pipelines/resources.py


class BuildPyWithData(build_py):
    """build_py that also copies the top-level data directories into pipelines/_data/."""

    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads the checkout itself
        for name in DATA_DIRS:
            source = HERE / name
            if source.is_dir():
                target = Path(self.build_lib) / "pipelines" / "_data" / name
                shutil.rmtree(target, ignore_errors=True)
                shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))

INSTALL_REQUIRES = [
    "apache-beam[gcp,aws]>=2.77,<2.78",
    "tensorflow>=2.21,<2.22",
    "seqio==0.0.20",
    "tensorflow-datasets>=4.9,<4.10",  # the TFDS loader (most Flan 2021 sources)
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
    "pillow>=10.1",  # the data card's plots (ImageFont.load_default(size) needs 10.1)
]

EXTRAS = {
    "test": [
        "pytest>=8",
        "moto[server]>=5",
        "gcp-storage-emulator>=2026.1",
        "duckdb>=1.0",
        "polars>=1.0",
        "ruff>=0.17,<0.18",  # `make test` lints first (ruff.toml)
        # Parity with Hugging Face T5 (tests/trainer/test_trainer_hf.py). CPU torch: constraints.txt pins the
        # +cpu build and the Makefile adds PyTorch's CPU wheel index, so no CUDA wheels are downloaded.
        "torch>=2.13,<2.14",
        "transformers>=5.24,<6",
    ],
    # benchmarks/throughput.py --hf: the Hugging Face peer (datasets + TRL's pack_dataset). Install TRL
    # without its dependencies (`pip install --no-deps -c constraints.txt trl`): pack_dataset needs only
    # datasets and pyarrow, not torch/accelerate.
    "bench": ["trl>=1.16,<1.17"],
    # safetensors: `flanmix export` / `train --init` read and write HF weights without torch.
    "trainer": ["jax>=0.10", "flax>=0.12", "optax>=0.2", "orbax-checkpoint>=0.12", "safetensors>=0.4",
                "tensorstore>=0.1.60", "msgpack>=1.0"],
}

setup(
    name="flanmix",
    version="0.1.0",
    description="Build Flan-Collection-style instruction-tuning corpora with Apache Beam.",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["pipelines", "pipelines.*", "trainer", "trainer.*", "flanmix_corpus", "flanmix_corpus.*"]),
    package_data={"pipelines": ["assets/*.model"]},
    include_package_data=True,
    cmdclass={"build_py": BuildPyWithData},
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["flanmix=pipelines.cli:main"]},
)
