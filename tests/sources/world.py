"""A small mixture over local sources in every loader's real on-disk format, for the snapshot tests:

    tiny_tfds    a TFDS dataset prepared with TFDS's own writer (GeneratorBasedBuilder): text, a
                 sequence of text, a ClassLabel, bool, float32 and a nested Sequence feature
    hf_saved     a DatasetDict written by `save_to_disk` in two Arrow files (int column with a None, nested int lists)
    hf_json      JSON Lines read through HF's packaged `json` builder (data_files)
    niv2_task    a real Super-NaturalInstructions task file (/work/shared/data/niv2)
    cot_tsv      a CoT TSV (question, answer, rationale) with one malformed line
    toy_jsonl    JSON Lines with ints and floats in one float field, None, nested lists, a broken line
    missing_tfds a TFDS dataset that is not prepared: the source that cannot be fetched

Templates render the typed fields as Python prints them (1 vs 1.0, True, lists), so a value that came
back with another type would change the corpus bytes.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

NIV2_ROOT = Path("/work/shared/data/niv2")
NIV2_TASK = "task1191_food_veg_nonveg"

TFDS_EXAMPLES = [
    {"question": "Which is a fruit?", "choices": ["apple", "brick"], "label": 0, "ok": True, "score": 0.5,
     "answers": {"text": ["apple"], "start": [0]}},
    {"question": "Which is a tool?", "choices": ["pear", "hammer"], "label": 1, "ok": False, "score": 1.5,
     "answers": {"text": ["hammer"], "start": [5]}},
    {"question": "Which is blue?", "choices": ["sky", "grass"], "label": 0, "ok": True, "score": 2.0,
     "answers": {"text": [], "start": []}},
]
HF_ROWS = {"question": ["2+2?", "Capital of France?", "Color of the sky?", "3*3?", "Opposite of hot?"],
           "answer": ["4", "Paris", "blue", "9", "cold"], "n": [4, None, 0, 9, -1],
           "spans": [[[0, 1]], [], [[2, 3], [4, 5]], [[1, 1]], []]}
JSONL_ROWS = [
    {"q": "2+2?", "a": "4", "x": 1, "tags": ["math"], "extra": None},
    {"q": "Half of 3?", "a": "1.5", "x": 1.5, "tags": [], "extra": {"k": [1, 2.0]}},
    {"q": "Sky?", "a": "blue", "x": 0, "tags": ["a", "b"], "extra": "s"},
]
TSV = "What is 2+2?\t4\tTwo plus two is four.\nWhat is 3+3?\t6\tThree plus three is six.\nno tabs here\nIs ice cold?\tyes\tIce is frozen water.\n"

ENTRY = """\
schema_version: 1
name: {name}
collections: [user]
task_categories: [Question Answering]
languages: [English]
license: cc-by-4.0
loader: {loader}
splits: {{train: {split}}}
fields: {fields}
templates: [{name}_fam]
"""
FAMILY = """\
schema_version: 1
family: {name}_fam
templates:
  - id: {name}_t1
    shots: zero_shot
    options: false
    cot: false
    inputs: "{inputs}"
    targets: "{targets}"
  - id: {name}_t2
    shots: zero_shot
    options: false
    cot: false
    inputs: "Answer this. {inputs}"
    targets: "{targets}"
"""
MIXTURE = """\
schema_version: 1
name: snapshot_world
seed: 3
split: train
sequence_length: {inputs: 128, targets: 32}
members:
""" + "".join(f"  - dataset: {n}\n" for n in ("cot_tsv", "hf_json", "hf_saved", "missing_tfds", "niv2_task", "tiny_tfds", "toy_jsonl"))


def _tfds_dir(root: Path) -> Path:
    import numpy as np
    import tensorflow_datasets as tfds

    class FlanmixSnapTiny(tfds.core.GeneratorBasedBuilder):
        """Three rows in the TFDS feature kinds the catalog uses."""

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
            return {"train": self._generate_examples()}

        def _generate_examples(self):
            for i, ex in enumerate(TFDS_EXAMPLES):
                yield i, ex

    FlanmixSnapTiny(data_dir=str(root)).download_and_prepare()
    return root


def make_world(base: Path) -> dict:
    """Write the sources, catalog, templates and mixture under `base`; returns their paths."""
    import datasets

    src = base / "sources"
    src.mkdir(parents=True)
    tfds_root = _tfds_dir(src / "tfds")
    # two Arrow files (3 + 2 rows): a read unit never splits a record batch, so `train[1:]` with
    # rows_per_shard 2 plans two units, [1, 3) and [3, 5), one per file
    datasets.DatasetDict({"train": datasets.Dataset.from_dict(HF_ROWS)}).save_to_disk(str(src / "hf_saved"), num_shards={"train": 2})
    (src / "hf_json").mkdir()
    (src / "hf_json" / "train.jsonl").write_text("".join(json.dumps({"question": q, "answer": a}) + "\n"
                                                         for q, a in zip(HF_ROWS["question"], HF_ROWS["answer"])))
    (src / "niv2" / "tasks").mkdir(parents=True)
    shutil.copy(NIV2_ROOT / "tasks" / f"{NIV2_TASK}.json", src / "niv2" / "tasks")
    (src / "cot.tsv").write_text(TSV, encoding="utf-8")
    (src / "toy.jsonl").write_text("".join(json.dumps(r) + "\n" for r in JSONL_ROWS[:2]) + "not json\n"
                                   + json.dumps(JSONL_ROWS[2]) + "\n", encoding="utf-8")
    def rel(path: Path) -> str:  # as a catalog names its files: relative to the entry file (base/catalog/)
        return os.path.relpath(path, base / "catalog")

    entries = {
        "tiny_tfds": ("{type: tfds, args: {name: 'flanmix_snap_tiny:1.0.0', data_dir: '%s', rows_per_shard: 2}}" % rel(tfds_root),
                      "train", "{question: string, choices: 'list[string]', label: int, ok: bool, score: float, answers: object}",
                      "{{ question }} {{ choices }} ok={{ ok }} score={{ score }}", "{{ label }}"),
        "missing_tfds": ("{type: tfds, args: {name: 'flanmix_not_prepared:1.0.0', data_dir: '%s'}}" % rel(tfds_root),
                         "train", "{question: string}", "{{ question }}", "x"),
        "hf_saved": ("{type: hf_datasets, args: {path: '%s', rows_per_shard: 2}}" % rel(src / "hf_saved"), "'train[1:]'",
                     "{question: string, answer: string, n: int}",  # spans: undeclared, still pinned
                     "{{ question }} n={{ n }}", "{{ answer }}"),
        "hf_json": ("{type: hf_datasets, args: {dataset: json, data_files: {train: '%s'}}}" % rel(src / "hf_json" / "*.jsonl"),
                    "train", "{question: string, answer: string}", "{{ question }}", "{{ answer }}"),
        "niv2_task": ("{type: niv2_json, args: {task: %s, root: '%s'}}" % (NIV2_TASK, rel(src / "niv2")), "train",
                      "{definition: string, positive_examples: 'list[object]', input: string, output: string, outputs: 'list[string]'}",
                      "{{ definition }} {{ input }}", "{{ output }}"),
        "cot_tsv": ("{type: cot_tsv, args: {path: '%s'}}" % rel(src / "cot.tsv"), "train",
                    "{question: string, answer: string, rationale: string}", "{{ question }}", "{{ rationale }} {{ answer }}"),
        "toy_jsonl": ("{type: jsonl, args: {path: '%s'}}" % rel(src / "toy.jsonl"), "train",
                      "{q: string, a: string, x: float, tags: 'list[string]'}", "{{ q }} x={{ x }} tags={{ tags }}", "{{ a }}"),
    }
    cat, tpl = base / "catalog", base / "templates"
    cat.mkdir()
    tpl.mkdir()
    for name, (loader, split, fields, inputs, targets) in entries.items():
        (cat / f"{name}.yaml").write_text(ENTRY.format(name=name, loader=loader, split=split, fields=fields), encoding="utf-8")
        (tpl / f"{name}_fam.yaml").write_text(FAMILY.format(name=name, inputs=inputs.replace('"', '\\"'), targets=targets), encoding="utf-8")
    (base / "snapshot_world.yaml").write_text(MIXTURE, encoding="utf-8")
    return {"sources": src, "catalog": cat, "templates": tpl, "mixture": base / "snapshot_world.yaml"}
