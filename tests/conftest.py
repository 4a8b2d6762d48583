"""Shared fixtures: small real corpora built with the real Beam job, once per test session."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from pipelines import resources  # noqa: E402
from pipelines.runner.graph import run_build  # noqa: E402
from pipelines.definitions.catalog import load_catalog  # noqa: E402
from pipelines.definitions.mixtures import load_mixture  # noqa: E402
from pipelines.planning.plan import BuildOptions, make_plan  # noqa: E402
from pipelines.definitions.templates import load_templates  # noqa: E402
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
    plan = make_plan(load_mixture(mixture), catalog, families, vocab, BuildOptions(**plan_kwargs))
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


@pytest.fixture(scope="session")
def demo_full(tmp_path_factory, catalog, families, vocab):
    """The demo mixture at its own lengths (2048/512: nothing is cut, no exemplar dropped), 2 shards, in
    the three outputs of one plan: encdec rows, decoder rows (2560) and the --format jsonl text.
    {"encdec" | "decoder" | "text": (directory, plan)}. Used by the data card and inspect tests."""
    out = {}
    for name, kwargs in (("encdec", {}), ("decoder", {"layout": "decoder"}), ("text", {"output_format": "jsonl"})):
        directory = tmp_path_factory.mktemp(f"demo_full_{name}")
        out[name] = (directory, build_corpus(directory, catalog, families, vocab, num_shards=2, **kwargs))
    return out
