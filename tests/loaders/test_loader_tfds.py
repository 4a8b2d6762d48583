"""TFDS: a tiny dataset defined here is prepared into a temporary data_dir (the TFDS on-disk format)
and read back through the loader's plan + read, as a build reads a prepared catalog dataset."""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from pipelines.errors import LoaderError  # noqa: E402
from pipelines.loaders import get_loader, offline_ready  # noqa: E402

EXAMPLES = [
    {"question": "Which is a fruit?", "choices": ["apple", "brick"], "label": 0, "ok": True, "score": 0.5,
     "answers": {"text": ["apple"], "start": [0]}},
    {"question": "Which is a tool?", "choices": ["pear", "hammer"], "label": 1, "ok": False, "score": 1.5,
     "answers": {"text": ["hammer"], "start": [5]}},
    {"question": "Which is blue?", "choices": ["sky", "grass"], "label": 0, "ok": True, "score": 2.5,
     "answers": {"text": [], "start": []}},
]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    import tensorflow_datasets as tfds

    class FlanmixTinyMc(tfds.core.GeneratorBasedBuilder):
        """Three multiple-choice rows in every TFDS feature kind the catalog uses."""

        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
                "question": tfds.features.Text(),
                "choices": tfds.features.Sequence(tfds.features.Text()),
                "label": tfds.features.ClassLabel(num_classes=2),
                "ok": tfds.features.Scalar(dtype=np.bool_),
                "score": tfds.features.Scalar(dtype=np.float32),
                "answers": tfds.features.Sequence({"text": tfds.features.Text(), "start": tfds.features.Scalar(dtype=np.int32)}),
            }))

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples(EXAMPLES), "test": self._generate_examples(EXAMPLES[:1])}

        def _generate_examples(self, examples):
            for i, ex in enumerate(examples):
                yield i, ex

    root = tmp_path_factory.mktemp("tfds")
    FlanmixTinyMc(data_dir=str(root)).download_and_prepare()
    return str(root)


def read(args, source="train"):
    loader = get_loader("tfds")
    shards = loader.plan("tiny", "train", source, args)
    return shards, [row for shard in shards for row in loader.read(shard)]


def test_prepared_dataset_reads_as_plain_python_with_split_indices(data_dir):
    args = {"name": "flanmix_tiny_mc:1.0.0", "data_dir": data_dir, "rows_per_shard": 2}
    assert offline_ready("tfds", args)
    shards, rows = read(args)
    assert [s.args["_range"] for s in shards] == [[0, 2], [2, 3]]
    assert [r.row_id for r in rows] == ["train:0", "train:1", "train:2"]
    assert rows[1].fields == {"question": "Which is a tool?", "choices": ["pear", "hammer"], "label": 1, "ok": False,
                              "score": 1.5, "answers": {"text": ["hammer"], "start": [5]}}
    assert rows[2].fields["answers"] == {"text": [], "start": []}


def test_slices_keep_the_row_index_and_version_is_optional(data_dir):
    _, rows = read({"name": "flanmix_tiny_mc", "data_dir": data_dir}, source="train[-2:]")
    assert [(r.row_id, r.fields["question"]) for r in rows] == [("train:1", "Which is a tool?"), ("train:2", "Which is blue?")]
    _, rows = read({"name": "flanmix_tiny_mc:1.0.0", "data_dir": data_dir}, source="test")
    assert [r.row_id for r in rows] == ["test:0"]


def test_catalog_row_renders_through_template_vars(data_dir):
    """A template family variable bound from TFDS raw fields (ClassLabel index -> option text)."""
    from pipelines.definitions.templates import Template, compile_template, render

    _, rows = read({"name": "flanmix_tiny_mc:1.0.0", "data_dir": data_dir})
    t = Template(id="t", family="f", shots="zero_shot", options=True, cot=False, inputs="{{ question }}",
                 targets="{{ answer }}", answer_choices="{{ options | join('|||') }}",
                 variables=(("options", "choices"), ("answer", "choices[label]")))
    assert render(compile_template(t), rows[1].fields) == ("Which is a tool?", "hammer")


def test_unprepared_dataset_fails_with_what_was_tried_and_how_to_provide_it(tmp_path, data_dir):
    args = {"name": "glue/rte:2.0.0", "data_dir": str(tmp_path), "hint": "GLUE is small"}
    assert not offline_ready("tfds", args)
    with pytest.raises(LoaderError) as err:
        read(args)
    message = str(err.value)
    assert f"tried {tmp_path}/glue/rte (no prepared copy)" in message
    assert "tfds build glue/rte:2.0.0 --data_dir DIR" in message and "try_gcs" in message and "GLUE is small" in message
    with pytest.raises(LoaderError, match="no split 'validation'"):
        read({"name": "flanmix_tiny_mc:1.0.0", "data_dir": data_dir}, source="validation")
