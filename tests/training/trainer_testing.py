"""Helpers shared by the trainer tests: a tiny real corpus, a compile cache, manifest surgery.

"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# Lengths of the test corpus: short enough for a CPU, long enough that rows hold several examples.
INPUTS_LENGTH, TARGETS_LENGTH = 256, 64

MIXTURE = """\
schema_version: 1
name: trainer_test
description: A few shipped datasets, short and long, for the trainer tests.
seed: 0
split: train
data: samples
sequence_length: {inputs: 256, targets: 64}
overlong: truncate
members:
  - dataset: cot_gsm8k
  - dataset: cot_creak
  - dataset: task1146_country_capital
  - dataset: task1332_check_leap_year
"""


def enable_compile_cache(directory: Path) -> None:
    """Reuse compiled XLA programs between runs of the same model in this test session (a run and its
    resumed copy, and tests training the same tiny model on the same corpus shapes, compile identical
    programs; recompiling them dominates test time on 2 CPU cores). Programs that compile in under half
    a second (eager ops) are not worth a file."""
    import jax

    jax.config.update("jax_compilation_cache_dir", str(directory))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def _session_compile_cache() -> None:
    """One cache directory for every trainer test module of this process, removed when it exits."""
    import atexit
    import tempfile

    directory = tempfile.mkdtemp(prefix="flanmix_trainer_tests_jax_cache_")
    atexit.register(shutil.rmtree, directory, True)
    enable_compile_cache(Path(directory))


_session_compile_cache()


def build_test_corpus(out: Path, num_shards: int = 2) -> Path:
    """The real Beam job on four shipped datasets (about 600 examples, 350 rows at 256/64), a few seconds."""
    from pipelines import resources
    from pipelines.runner.graph import run_build
    from pipelines.definitions.catalog import load_catalog
    from pipelines.definitions.mixtures import load_mixture
    from pipelines.planning.plan import BuildOptions, make_plan
    from pipelines.definitions.templates import load_templates
    from pipelines.vocab import Vocabulary

    mixture_path = out.parent / "trainer_test_mixture.yaml"
    mixture_path.write_text(MIXTURE, encoding="utf-8")
    vocab = Vocabulary.load(resources.default_vocab_path())
    plan = make_plan(load_mixture(mixture_path), load_catalog(), load_templates(), vocab,
                     BuildOptions(num_shards=num_shards, inputs_length=INPUTS_LENGTH, targets_length=TARGETS_LENGTH))
    run_build(plan, vocab.model_proto, str(out), [])
    return out


def copy_corpus(src: Path, dst: Path, **manifest_changes) -> Path:
    """A copy of a corpus whose manifest has some top-level keys replaced (nested dicts are merged)."""
    shutil.copytree(src, dst)
    manifest = json.loads((dst / "manifest.json").read_text())
    for key, value in manifest_changes.items():
        if isinstance(value, dict) and isinstance(manifest.get(key), dict):
            manifest[key] = {**manifest[key], **value}
        else:
            manifest[key] = value
    (dst / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return dst
