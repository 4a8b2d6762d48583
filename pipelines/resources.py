"""Where the project's data directories live.

The catalog, templates and schemas are plain files at the top of the project. The catalog and
templates are read on the launcher and Beam workers receive the loaded objects inside the transforms.
Files a worker may still open (the feature specs under schemas/) are also installed with the package:
`setup.py` copies schemas/, templates/ and task_catalog/ into `pipelines/_data/` of every sdist or
wheel it builds, which is what Dataflow workers install (`--setup_file`). So no worker depends on the
launcher's working directory or checkout.

Lookup order: `FLANMIX_HOME` (a user's own checkout), else the source checkout this module sits in,
else the packaged copy.
"""
from __future__ import annotations

import os
from pathlib import Path

PACKAGED_DATA = Path(__file__).resolve().parent / "_data"
DATA_DIRS = ("schemas", "templates", "task_catalog")


def project_root() -> Path:
    env = os.environ.get("FLANMIX_HOME")
    if env:
        return Path(env)
    checkout = Path(__file__).resolve().parent.parent
    if (checkout / "schemas").is_dir():
        return checkout
    return PACKAGED_DATA  # installed from an sdist or wheel


def catalog_dir() -> Path:
    return project_root() / "task_catalog"


def templates_dir() -> Path:
    return project_root() / "templates"


def schemas_dir() -> Path:
    return project_root() / "schemas"


def default_vocab_path() -> Path:
    return Path(__file__).resolve().parent / "assets" / "flanmix_demo_sp8k.model"


def setup_file() -> Path | None:
    """The project's setup.py when running from a checkout (what `--setup_file` should point at)."""
    path = Path(__file__).resolve().parent.parent / "setup.py"
    return path if path.is_file() else None
