"""The one layout table (`flanmix_corpus.layouts`) says what schemas/ declares, and the corpus reader
imports no part of the pipeline."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from flanmix_corpus.layouts import LAYOUTS, feature_lengths, length_key

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("layout", ["encdec", "decoder"])
def test_layout_table_equals_the_schema_file(layout):
    spec = json.loads((ROOT / "schemas" / f"packed_{layout}.features.json").read_text())
    declared = [(name, f["shape"][0].removesuffix("_length")) for name, f in spec["features"].items()
                if f["dtype"] == "int32"]
    assert list(LAYOUTS[layout].features) == declared
    assert all(length_key(name) == key for name, key in declared)
    lengths = spec["example"]["sequence_length"]
    assert feature_lengths(layout, lengths) == {name: lengths[key] for name, key in declared}


def test_reader_and_trainer_data_load_no_pipeline_beam_or_jinja():
    probe = ("import sys, flanmix_corpus.reader, flanmix_corpus.tf_example, trainer.data, trainer.cli\n"
             "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pipelines', 'apache_beam', 'jinja2', 'sentencepiece')))")
    run = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == "[]"
