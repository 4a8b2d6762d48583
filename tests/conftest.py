"""Shared fixtures: small real corpora built with the real Beam job, once per test session."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from pipelines import resources  # noqa: E402
from pipelines.build import run_build  # noqa: E402
from pipelines.catalog import load_catalog  # noqa: E402
from pipelines.mixtures import load_mixture  # noqa: E402
from pipelines.plan import make_plan  # noqa: E402
from pipelines.templates import load_templates  # noqa: E402
from pipelines.vocab import Vocabulary  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: a test over ~10 s (deselect with -m 'not slow')")


@pytest.fixture(scope="session")
def catalog():
    return load_catalog()


@pytest.fixture(scope="session")
def families():
    return load_templates()


@pytest.fixture(scope="session")
def vocab():
    return Vocabulary.load(resources.default_vocab_path())


def build_corpus(out: Path, catalog, families, vocab, mixture="demo", beam_args=None, **plan_kwargs):
    plan = make_plan(load_mixture(mixture), catalog, families, vocab, **plan_kwargs)
    run_build(plan, vocab.model_proto, str(out), beam_args or [])
    return plan


@pytest.fixture(scope="session")
def demo_corpus(tmp_path_factory, catalog, families, vocab):
    """The demo mixture at short lengths (so packing has to work), 3 shards."""
    out = tmp_path_factory.mktemp("demo_corpus")
    plan = build_corpus(out, catalog, families, vocab, num_shards=3, inputs_length=512, targets_length=128)
    return out, plan


@pytest.fixture(scope="session")
def decoder_corpus(tmp_path_factory, catalog, families, vocab):
    """`demo_corpus` in the decoder-only layout: rows of 512 + 128 = 640 tokens, 3 shards."""
    out = tmp_path_factory.mktemp("decoder_corpus")
    plan = build_corpus(out, catalog, families, vocab, num_shards=3, inputs_length=512, targets_length=128,
                        layout="decoder")
    return out, plan


@pytest.fixture(scope="session")
def text_corpus(tmp_path_factory, catalog, families, vocab):
    """`demo_corpus` exported as rendered text (--format jsonl), sharded like it."""
    out = tmp_path_factory.mktemp("text_corpus")
    plan = build_corpus(out, catalog, families, vocab, num_shards=3, inputs_length=512, targets_length=128,
                        output_format="jsonl")
    return out, plan


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path
