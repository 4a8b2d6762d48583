"""`--cache` end to end, with the real Beam job on real CoT rows (the shipped samples, cut to 40 rows
per task, in their raw TSV format, one line malformed so dead letters travel through the cache).

A few-shot mixture: cot_gsm8k has few-shot templates, so it gets exemplar groups (two groups of its
40 rows, which lie in two files: its prompts show rows of its other file), served whole from its task
index or per group, while cot_creak and cot_qasc have zero-shot templates only and are served per
file. Cold build, filled cache, warm rebuild (whole-corpus replay) and per-file replay publish the
same bytes; one changed template misses only its dataset; a changed source file (even one byte, same
size, same mtime) or another vocabulary is never served from the cache; one changed row of the
few-shot task re-reads the task and re-renders only its exemplar group, a changed file of it every
group holding its rows; corrupt or half-written entries are misses, with the corpus unchanged; a
task index whose entry is gone is a task miss that the groups still serve."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

from pipelines import resources
from pipelines.cache import corpus, store
from pipelines.definitions.catalog import load_catalog
from pipelines.definitions.mixtures import load_mixture
from pipelines.definitions.templates import load_templates
from pipelines.planning.plan import BuildOptions, make_plan
from pipelines.runner.graph import run_build
from pipelines.vocab import Vocabulary

from emulators import s3_server  # noqa: F401 - fixture of the bucket test

IN_MEMORY = ["--direct_running_mode=in_memory", "--direct_num_workers=1"]
DATASETS = {"cot_gsm8k": "gsm8k_train.tsv", "cot_creak": "creak_train.tsv", "cot_qasc": "qasc_train.tsv"}
FEW_SHOT = "cot_gsm8k"  # exemplar groups: served by its task index, or per group; not per file (two files)
GROUPS = 2  # cot_gsm8k's exemplar groups: 40 rows // group_size 16
STORED_ENTRIES = 2 + GROUPS + 1 + 4  # a filled cache: the zero-shot files', the groups', cot_gsm8k's task
# index and each of the 4 source files' survey
SPLIT_FILES = ("gsm8k_a.tsv", "gsm8k_b.tsv")  # cot_gsm8k's rows, in two files read by one glob
CACHED = sorted(set(DATASETS) - {FEW_SHOT})  # zero-shot only: one entry per file
ENTRY = """schema_version: 1
name: {name}
collections: [cot]
task_categories: [Question Answering]
languages: [English]
loader: {{type: cot_tsv, args: {{path: {path}}}}}
splits: {{train: train}}
fields: {{question: string, answer: string, rationale: string}}
templates: [{templates}]
"""
FAMILY = """schema_version: 1
family: own_{name}
description: A template of {name}'s own, so a test can change one template.
templates:
  - id: own_{name}_q
    shots: zero_shot
    options: false
    cot: true
    inputs: |-
      {text}
      {{{{ question }}}}
    targets: "{{{{ rationale }}}} So the answer is {{{{ answer }}}}."
"""
FEW_SHOT_TEMPLATE = """  - id: own_{name}_fs
    shots: few_shot
    options: false
    cot: true
    inputs: "{{{{ question }}}}"
    targets: "{{{{ rationale }}}} {{{{ answer }}}}"
"""
MIXTURE = """schema_version: 1
name: cached
seed: 3
sequence_length: {inputs: 256, targets: 96}
overlong: drop
prompt_settings: {zs_noopt: 0.5, fs_noopt: 0.5}
few_shot: {group_size: 16}
members:
  - dataset: cot_gsm8k
  - mixture: zero_shot
"""
ZERO_SHOT = """schema_version: 1
name: zero_shot
prompt_settings: {zs_noopt: 1.0}
members:
""" + "".join(f"  - dataset: {n}\n" for n in CACHED)


class Workspace:
    """A catalog, templates and sources of our own under tmp, so the tests may change any of them."""

    def __init__(self, root: Path):
        self.root = root
        self.data, self.catalog, self.templates = root / "data", root / "catalog", root / "templates"
        for d in (self.data, self.catalog):
            d.mkdir(parents=True)
        shutil.copytree(resources.templates_dir(), self.templates)
        shipped = Path(resources.templates_dir()).parent / "task_catalog" / "data" / "cot"
        for name, file in DATASETS.items():
            lines = (shipped / file).read_bytes().split(b"\n")[:40]
            if name == "cot_creak":
                lines[5] = b"a line without its tabs"  # a dead letter (read stage)
            if name == FEW_SHOT:
                (self.data / "gsm8k").mkdir()
                for part, half in zip(SPLIT_FILES, (lines[:20], lines[20:])):
                    (self.data / "gsm8k" / part).write_bytes(b"\n".join(half) + b"\n")
                path, templates = self.data / "gsm8k" / "*.tsv", f"cot_qa, own_{name}"
            else:
                (self.data / file).write_bytes(b"\n".join(lines) + b"\n")
                path, templates = self.data / file, f"own_{name}"
            (self.catalog / f"{name}.yaml").write_text(ENTRY.format(name=name, path=path, templates=templates))
            self.family(name, "Answer the question.")
        self.mixture = root / "cached.yaml"
        self.mixture.write_text(MIXTURE)
        (root / "zero_shot.yaml").write_text(ZERO_SHOT)  # its settings override the mixture's for its members
        self.cache = str(root / "cache")
        self.vocab = Vocabulary.load(resources.default_vocab_path())

    def family(self, name: str, text: str) -> None:
        family = FAMILY + (FEW_SHOT_TEMPLATE if name == FEW_SHOT else "")
        (self.templates / f"own_{name}.yaml").write_text(family.format(name=name, text=text))

    def build(self, out: str, cache: str | None = "default", vocab: Vocabulary | None = None, beam_args=()) -> dict:
        vocab = vocab or self.vocab
        plan = make_plan(load_mixture(self.mixture), load_catalog(self.catalog), load_templates(self.templates), vocab,
                         BuildOptions(num_shards=2, cache=self.cache if cache == "default" else cache))
        run_build(plan, vocab.model_proto, out, [*IN_MEMORY, *beam_args])
        return plan


def digest(out: Path) -> dict[str, str]:
    """Every published file's SHA-256, the manifest's without its `cache` section."""
    files = {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
             for p in sorted(out.rglob("*")) if p.is_file() and p.name != "manifest.json"}
    files["manifest.json"] = hashlib.sha256(json.dumps(_manifest(out), sort_keys=True).encode()).hexdigest()
    return files


def _manifest(out: Path) -> dict:
    manifest = json.loads((out / "manifest.json").read_text())
    manifest.pop("cache", None)
    return manifest


def cache_of(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())["cache"]


def missed(out: Path) -> set[str]:
    """Datasets with a source file or an exemplar group that was not served from the cache."""
    return {d for d, c in cache_of(out)["datasets"].items() if c["misses"] or c["group_misses"]}


def entry_source(path: Path) -> str:
    """An entry header's "source": a file's path, "exemplar group N", "task index" or "rows in no exemplar group"."""
    data = path.read_bytes()
    size = int.from_bytes(data[len(store.MAGIC):len(store.MAGIC) + 4], "little")
    return json.loads(data[len(store.MAGIC) + 4:len(store.MAGIC) + 4 + size])["source"]


def drop_corpus_layer(ws: Workspace) -> None:
    """Forget the whole-corpus entries, so the next build runs the job on the per-file entries."""
    shutil.rmtree(Path(ws.cache) / "v1" / "corpus")


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    ws = Workspace(tmp_path_factory.mktemp("cache_ws"))
    ws.cold = ws.root / "cold"
    ws.build(str(ws.cold), cache=None)
    return ws


def test_cold_fill_warm_and_per_file_builds_publish_the_same_bytes(ws, monkeypatch):
    from pipelines.publish import card_plots

    fill, warm, per_file = ws.root / "fill", ws.root / "warm", ws.root / "per_file"
    drawn = []  # the card's plots: drawn by a build that runs its job, copied by a replayed one
    render = card_plots.render_png
    monkeypatch.setattr(card_plots, "render_png", lambda plot: drawn.append(plot.name) or render(plot))
    ws.build(str(fill))
    assert drawn and len(drawn) == len(set(drawn))
    drawn_by_fill = list(drawn)
    assert not (ws.cold / "manifest.json").read_text().count('"cache"')  # no --cache: no section at all
    no_groups = {"task_hits": 0, "task_misses": 0, "group_hits": 0, "group_misses": 0}
    # the few-shot task: its index missed, its two files were read, its groups built one by one
    assert cache_of(fill) == {"corpus_hit": False, "hits": 0, "misses": 4, "corrupt": 0, "not_stored": 0, "uncacheable": 0,
                              "task_hits": 0, "task_misses": 1, "group_hits": 0, "group_misses": GROUPS,
                              "datasets": {**{n: {"hits": 0, "misses": 1, "uncacheable": 0, **no_groups} for n in CACHED},
                                           FEW_SHOT: {"hits": 0, "misses": 2, "uncacheable": 0, "task_hits": 0,
                                                      "task_misses": 1, "group_hits": 0, "group_misses": GROUPS}}}
    ws.build(str(warm))
    assert cache_of(warm)["corpus_hit"] and cache_of(warm)["hits"] == 4 and drawn == drawn_by_fill
    drop_corpus_layer(ws)
    ws.build(str(per_file))
    # the few-shot task replayed whole from its index: files not read, groups not formed
    assert cache_of(per_file) == {**cache_of(fill), "hits": 4, "misses": 0, "task_hits": 1, "task_misses": 0,
                                  "group_misses": 0,
                                  "datasets": {**{n: {"hits": 1, "misses": 0, "uncacheable": 0, **no_groups} for n in CACHED},
                                               FEW_SHOT: {"hits": 2, "misses": 0, "uncacheable": 0, "task_hits": 1,
                                                          "task_misses": 0, "group_hits": 0, "group_misses": 0}}}
    cold = digest(ws.cold)
    assert digest(fill) == cold and digest(warm) == cold and digest(per_file) == cold
    manifest = _manifest(per_file)
    assert manifest["datasets"]["cot_creak"]["dead_letter"]["read"] == 1  # replayed from the entries
    assert sum(d["dead_letter"].get("tokenize", 0) for d in manifest["datasets"].values()) > 0  # overlong: drop
    assert manifest["mixing"]["few_shot"]["exemplars_per_prompt"]  # few-shot prompts came through too
    read = sum(d["rows_read"] for d in manifest["datasets"].values())
    dead = sum(sum(d["dead_letter"].values()) for d in manifest["datasets"].values())
    # The row ledger (stages.ledger) balanced, or nothing would have been published; rates are 1 here.
    assert read == 120 and manifest["num_examples"] + dead == read


def test_one_changed_template_misses_only_its_dataset(ws, tmp_path):
    ws.build(str(tmp_path / "fill"))  # the cache holds the unchanged build
    ws.family("cot_qasc", "Answer this question, please.")
    try:
        ws.build(str(tmp_path / "changed"))
        assert missed(tmp_path / "changed") == {"cot_qasc"} and not cache_of(tmp_path / "changed")["corpus_hit"]
        ws.build(str(tmp_path / "reference"), cache=None)
        assert digest(tmp_path / "changed") == digest(tmp_path / "reference") != digest(ws.cold)
    finally:
        ws.family("cot_qasc", "Answer the question.")


def test_a_changed_source_file_is_never_served_stale(ws, tmp_path):
    ws.build(str(tmp_path / "fill"))
    path = ws.data / DATASETS["cot_qasc"]
    before, stat = path.read_bytes(), path.stat()
    i = before.index(b"\t") - 1  # one byte of the first question: same size, and the mtime put back
    changed = before[:i] + (b"X" if before[i:i + 1] != b"X" else b"Y") + before[i + 1:]
    path.write_bytes(changed)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    try:
        ws.build(str(tmp_path / "changed"))
        assert missed(tmp_path / "changed") == {"cot_qasc"} and not cache_of(tmp_path / "changed")["corpus_hit"]
        ws.build(str(tmp_path / "reference"), cache=None)
        assert digest(tmp_path / "changed") == digest(tmp_path / "reference") != digest(ws.cold)
    finally:
        path.write_bytes(before)


def _second_file_few_shot_keys(out: Path) -> list[str]:
    """Copy keys of the few-shot task's few-shot examples whose row lies in its second file (row ids
    `train:1:<line>`, `loaders.cot_tsv`)."""
    import pyarrow.parquet as pq

    found = []
    for shard in sorted((out / "parquet").glob("*.parquet")):
        for row in pq.read_table(shard, columns=["provenance"]).column("provenance").to_pylist():
            for p in row:
                dataset, _, setting, key = p.split("|")
                if dataset == FEW_SHOT and setting.startswith("fs") and key.startswith("train:1:"):
                    found.append(key)
    return found


def test_a_changed_file_of_the_few_shot_task_re_renders_the_whole_task(ws, tmp_path):
    """Every row of the task's first file changes; its second file's few-shot prompts show rows of the
    first (both groups hold rows of both files), so an entry of the second file alone would be stale:
    every group misses."""
    assert _second_file_few_shot_keys(ws.cold)  # the second file has few-shot prompts, exemplars from the whole group
    ws.build(str(tmp_path / "fill"))
    path = ws.data / "gsm8k" / SPLIT_FILES[0]
    before = path.read_bytes()
    path.write_bytes(b"\n".join(b"Q: " + line if line else line for line in before.split(b"\n")))
    try:
        ws.build(str(tmp_path / "changed"))
        c = cache_of(tmp_path / "changed")
        assert not c["corpus_hit"] and c["hits"] == 2 and c["misses"] == 2  # the few-shot task's files read again
        assert c["datasets"][FEW_SHOT] == {"hits": 0, "misses": 2, "uncacheable": 0, "task_hits": 0, "task_misses": 1,
                                           "group_hits": 0, "group_misses": GROUPS}  # both groups rendered again
        ws.build(str(tmp_path / "reference"), cache=None)
        assert digest(tmp_path / "changed") == digest(tmp_path / "reference") != digest(ws.cold)
    finally:
        path.write_bytes(before)


def test_one_changed_row_of_the_few_shot_task_re_renders_only_its_group(ws, tmp_path):
    """One byte of one question of cot_gsm8k (same size): its task index misses, so both its files are
    read again, the exemplar group holding that row misses and the other is served; the next build
    serves the whole task from the new index. Then its few-shot template changes and every group of it
    misses, while the zero-shot datasets are still served."""
    ws.build(str(tmp_path / "fill"))
    path = ws.data / "gsm8k" / SPLIT_FILES[1]
    before = path.read_bytes()
    i = before.index(b"\t") - 1
    path.write_bytes(before[:i] + (b"X" if before[i:i + 1] != b"X" else b"Y") + before[i + 1:])
    try:
        ws.build(str(tmp_path / "row"))
        c = cache_of(tmp_path / "row")
        assert not c["corpus_hit"] and c["hits"] == 2 and c["misses"] == 2 and c["task_misses"] == 1
        assert (c["datasets"][FEW_SHOT]["group_hits"], c["datasets"][FEW_SHOT]["group_misses"]) == (GROUPS - 1, 1)
        ws.build(str(tmp_path / "row_reference"), cache=None)
        assert digest(tmp_path / "row") == digest(tmp_path / "row_reference") != digest(ws.cold)
        drop_corpus_layer(ws)
        ws.build(str(tmp_path / "row_again"))
        c = cache_of(tmp_path / "row_again")
        assert (c["task_hits"], c["task_misses"], c["group_hits"], c["group_misses"], c["hits"]) == (1, 0, 0, 0, 4)
        assert digest(tmp_path / "row_again") == digest(tmp_path / "row")
    finally:
        path.write_bytes(before)
    ws.family(FEW_SHOT, "Solve the problem.")
    try:
        ws.build(str(tmp_path / "template"))
        c = cache_of(tmp_path / "template")
        assert missed(tmp_path / "template") == {FEW_SHOT} and c["group_misses"] == GROUPS and c["hits"] == 2
        ws.build(str(tmp_path / "template_reference"), cache=None)
        assert digest(tmp_path / "template") == digest(tmp_path / "template_reference") != digest(ws.cold)
    finally:
        ws.family(FEW_SHOT, "Answer the question.")


def test_group_keys_cover_rows_ordinal_and_sampling():
    from pipelines.cache import keys
    from pipelines.loaders.base import RawRow
    from pipelines.planning.sampling import TaskSampling

    rows = [RawRow("train:0:1", {"question": "q1", "answer": "a"}), RawRow("train:0:2", {"question": "q2", "answer": "b"})]
    task = TaskSampling("d", "cot", 1.0, count=2, rate=1.0, settings=(("zs_noopt", 0.5), ("fs_noopt", 0.5)))
    base = keys.group_key("t", "d", 3, task, rows)
    assert keys.group_key("t", "d", 3, task, list(rows)) == base
    changed_row = [rows[0], RawRow("train:0:2", {"question": "q2", "answer": "c"})]
    other_task = dataclasses.replace(task, rate=0.5)
    other_settings = dataclasses.replace(task, settings=(("zs_noopt", 0.4), ("fs_noopt", 0.6)))
    assert len({base, keys.group_key("t", "d", 3, task, changed_row), keys.group_key("t", "d", 4, task, rows),
                keys.group_key("u", "d", 3, task, rows), keys.group_key("t", "d", 3, other_task, rows),
                keys.group_key("t", "d", 3, other_settings, rows), keys.group_key("t", "d", 3, task, rows[:1])}) == 7


def test_another_vocabulary_is_never_served_stale(ws, tmp_path):
    import sentencepiece as spm

    ws.build(str(tmp_path / "fill"))
    text = tmp_path / "text.txt"
    text.write_text("\n".join(line.replace("\t", " ") for f in sorted(ws.data.rglob("*.tsv"))
                              for line in f.read_text().splitlines()))
    spm.SentencePieceTrainer.train(input=str(text), model_prefix=str(tmp_path / "small"), vocab_size=400,
                                   pad_id=0, eos_id=1, unk_id=2, bos_id=-1, byte_fallback=True, num_threads=1)
    other = Vocabulary.load(str(tmp_path / "small.model"))
    ws.build(str(tmp_path / "other"), vocab=other)
    c = cache_of(tmp_path / "other")
    assert c["hits"] == 0 and c["misses"] == 4 and not c["corpus_hit"]
    assert (c["task_hits"], c["group_hits"], c["group_misses"]) == (0, 0, GROUPS)
    assert _manifest(tmp_path / "other")["vocabulary"]["sha256"] == other.spec.sha256


def test_corrupt_and_half_written_entries_are_misses(ws, tmp_path, caplog):
    cache = tmp_path / "cache"
    ws.build(str(tmp_path / "fill"), cache=str(cache))
    stored = sorted((cache / "v1").glob("*/*.entry"))
    assert len(stored) == STORED_ENTRIES and all(store.parse(p.read_bytes(), p.name[:-len(".entry")]).frames for p in stored)
    groups = [p for p in stored if entry_source(p).startswith("exemplar group")]
    assert len(groups) == GROUPS
    files = [p for p in stored if entry_source(p).endswith(".tsv")]
    entries = [files[0], groups[0]]  # one file's entry, one group's (which the task index lists)
    index = next((cache / "v1" / "corpus").glob("*.json"))
    stored_shard = next((index.parent / index.stem / "tfrecord").glob("*.tfrecord"))
    data = bytearray(stored_shard.read_bytes())
    data[len(data) // 2] ^= 0xFF  # a damaged file of the stored corpus: the job runs instead
    stored_shard.write_bytes(bytes(data))
    # One entry altered (a file's), another cut short (a group's: what a non-atomic writer would leave);
    # a crashed writer's temp file beside a name is ignored.
    bad = bytearray(entries[0].read_bytes())
    bad[len(bad) // 2] ^= 0x01
    entries[0].write_bytes(bytes(bad))
    Path(f"{entries[0]}.tmp-crashed").write_bytes(bytes(bad[: len(bad) // 2]))
    entries[1].write_bytes(entries[1].read_bytes()[:-100])
    with caplog.at_level("WARNING"):
        ws.build(str(tmp_path / "after"), cache=str(cache))
    c = cache_of(tmp_path / "after")
    # the task index is intact but lists the cut group: a task miss (its 2 files read), then per group
    assert (c["misses"], c["group_misses"], c["corrupt"], c["hits"], c["group_hits"]) == (1 + 2, 1, 2, 1, GROUPS - 1)
    assert (c["task_hits"], c["task_misses"]) == (0, 1)
    assert not c["corpus_hit"]
    assert digest(tmp_path / "after") == digest(ws.cold)
    assert sum("flanmix cache: ignoring the entry" in r.getMessage() for r in caplog.records) == 2
    assert sum("not using the stored corpus" in r.getMessage() for r in caplog.records) == 1
    assert all(store.parse(p.read_bytes(), p.name[:-len(".entry")]).frames for p in entries)  # rewritten whole


def test_cache_in_a_bucket(ws, tmp_path, s3_server):
    """Entries in s3:// (moto_server): filled by one build, read by the next (its corpus layer removed,
    so the job runs on the per-file entries). Beam makes a boto3 client per call: ~15 s here."""
    cache = f"s3://{s3_server.bucket}/flanmix-cache"
    ws.build(str(tmp_path / "fill"), cache=cache, beam_args=s3_server.beam_args)
    client = s3_server.client()
    stored = client.list_objects_v2(Bucket=s3_server.bucket, Prefix="flanmix-cache/v1/")["Contents"]
    assert sum(o["Key"].endswith(".entry") for o in stored) == STORED_ENTRIES and not any(".tmp-" in o["Key"] for o in stored)
    client.delete_objects(Bucket=s3_server.bucket, Delete={"Objects": [
        {"Key": o["Key"]} for o in stored if "/corpus/" in o["Key"]]})
    ws.build(str(tmp_path / "per_file"), cache=cache, beam_args=s3_server.beam_args)
    assert cache_of(tmp_path / "per_file")["hits"] == 4 and cache_of(tmp_path / "per_file")["task_hits"] == 1
    assert digest(tmp_path / "fill") == digest(tmp_path / "per_file") == digest(ws.cold)


def test_corpus_key_covers_the_vocabulary_sources_and_plan(ws):
    plan = make_plan(load_mixture(ws.mixture), load_catalog(ws.catalog), load_templates(ws.templates), ws.vocab,
                     BuildOptions(num_shards=2, cache=ws.cache))
    import dataclasses

    from pipelines.cache import keys

    hashes = corpus.source_hashes(plan)
    base = corpus.corpus_key(plan, hashes)
    assert corpus.corpus_key(dataclasses.replace(plan, cache_dir="elsewhere"), hashes) == base
    assert corpus.corpus_key(dataclasses.replace(plan, vocab_sha256="0" * 64), hashes) != base
    assert corpus.corpus_key(dataclasses.replace(plan, seed=4), hashes) != base
    assert corpus.corpus_key(plan, hashes[:-1] + ["0" * 64]) != base
    tk = keys.task_keys(plan)
    assert keys.task_keys(dataclasses.replace(plan, vocab_sha256="0" * 64)).keys() == tk.keys()
    assert all(a != b for a, b in zip(tk.values(), keys.task_keys(dataclasses.replace(plan, vocab_sha256="0" * 64)).values()))
    assert all(a != b for a, b in zip(tk.values(), keys.task_keys(dataclasses.replace(plan, inputs_length=255)).values()))
    # what rendering reads beyond the datasets (issue 14's option formats) keys the entries too
    assert all(a != b for a, b in zip(tk.values(), keys.task_keys(dataclasses.replace(plan, option_marker_answers=0.25)).values()))
    assert plan.exemplar_groups  # the test mixture asks for few-shot prompts


def test_overwrite_replays_only_over_the_same_corpus(ws, tmp_path):
    """--overwrite of an unchanged build is published from the cache; over another live corpus the job
    runs instead (it publishes beside the live files and switches the manifest last), same bytes."""
    out = tmp_path / "out"
    ws.build(str(out))  # fills (or hits) the corpus layer for this plan
    other = make_plan(load_mixture(ws.mixture), load_catalog(ws.catalog), load_templates(ws.templates), ws.vocab,
                      BuildOptions(num_shards=2, seed=7))
    run_build(other, ws.vocab.model_proto, str(out), IN_MEMORY, overwrite=True)  # another corpus is live now
    plan = make_plan(load_mixture(ws.mixture), load_catalog(ws.catalog), load_templates(ws.templates), ws.vocab,
                     BuildOptions(num_shards=2, cache=ws.cache))
    run_build(plan, ws.vocab.model_proto, str(out), IN_MEMORY, overwrite=True)
    assert not cache_of(out)["corpus_hit"]  # built by the job, beside the seed-7 corpus
    shas = lambda d: sorted(f["sha256"] for f in _manifest(d)["files"])  # noqa: E731 - names may carry a run id
    assert shas(out) == shas(ws.cold) and _manifest(out)["seed"] == _manifest(ws.cold)["seed"]
    run_build(plan, ws.vocab.model_proto, str(out), IN_MEMORY, overwrite=True)  # the same corpus is live
    assert cache_of(out)["corpus_hit"]
    listed = {f["path"] for f in _manifest(out)["files"]}
    assert all((out / p).is_file() for p in listed)


def test_a_corrupt_task_index_is_a_task_miss_and_the_groups_still_serve(ws, tmp_path, caplog):
    cache = tmp_path / "cache"
    ws.build(str(tmp_path / "fill"), cache=str(cache))
    (index,) = [p for p in (cache / "v1").glob("*/*.entry") if entry_source(p) == "task index"]
    data = bytearray(index.read_bytes())
    data[-40] ^= 0x01
    index.write_bytes(bytes(data))
    shutil.rmtree(cache / "v1" / "corpus")
    with caplog.at_level("WARNING"):
        ws.build(str(tmp_path / "after"), cache=str(cache))
    c = cache_of(tmp_path / "after")
    assert (c["task_hits"], c["task_misses"], c["corrupt"], c["group_hits"], c["group_misses"]) == (0, 1, 1, GROUPS, 0)
    assert sum(f"{FEW_SHOT} (task index)" in r.getMessage() for r in caplog.records) == 1
    assert digest(tmp_path / "after") == digest(ws.cold)
    assert store.parse(index.read_bytes(), index.name[:-len(".entry")]).frames  # stored again, whole


def test_the_survey_of_unchanged_files_is_served_and_a_changed_file_is_surveyed_again(ws, tmp_path, monkeypatch):
    """The survey's entries (cache.survey): a build over a filled cache surveys no file, so its
    survey reads nothing; one changed file is surveyed again (and read by its task). Same bytes."""
    from pipelines.stages import survey

    cache = tmp_path / "cache"
    ws.build(str(tmp_path / "fill"), cache=str(cache))
    assert sum(entry_source(p).endswith("(survey)") for p in (cache / "v1").glob("*/*.entry")) == 4  # one per file
    surveyed = []
    real = survey.get_loader

    def counting(loader_type):  # the survey's own reads (stages.read has its own reference)
        loader = real(loader_type)

        class Counting:
            def __getattr__(self, name):
                return getattr(loader, name)

            def read(self, shard):
                surveyed.append(shard.args["path"])
                return loader.read(shard)
        return Counting()

    monkeypatch.setattr(survey, "get_loader", counting)
    shutil.rmtree(cache / "v1" / "corpus")
    ws.build(str(tmp_path / "served"), cache=str(cache))
    assert surveyed == [] and digest(tmp_path / "served") == digest(ws.cold)
    path = ws.data / DATASETS["cot_qasc"]
    before = path.read_bytes()
    i = before.index(b"\t") - 1  # one byte of the first question
    path.write_bytes(before[:i] + (b"X" if before[i:i + 1] != b"X" else b"Y") + before[i + 1:])
    try:
        ws.build(str(tmp_path / "changed"), cache=str(cache))
        assert surveyed == [str(path)]
        ws.build(str(tmp_path / "reference"), cache=None)
        assert digest(tmp_path / "changed") == digest(tmp_path / "reference") != digest(ws.cold)
    finally:
        path.write_bytes(before)
