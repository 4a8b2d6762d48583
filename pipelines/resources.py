"""Where the project's data directories live.

The catalog, templates and schemas are plain files at the top of the project. They are read on the
launcher only; Beam workers receive the loaded objects inside the transforms, so no worker depends
on the launcher's working directory. `FLANMIX_HOME` points a user's own checkout elsewhere.
"""
from __future__ import annotations

import os
from pathlib import Path


def project_root() -> Path:
    env = os.environ.get("FLANMIX_HOME")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent


def catalog_dir() -> Path:
    return project_root() / "task_catalog"


def templates_dir() -> Path:
    return project_root() / "templates"


def schemas_dir() -> Path:
    return project_root() / "schemas"


def default_vocab_path() -> Path:
    return Path(__file__).resolve().parent / "assets" / "flanmix_demo_sp8k.model"
