"""`flanmix inspect` (pipelines/row_inspect.py): every segment of the demo corpus, decoded from its packed
row, is the text the `--format jsonl` export of the same plan holds for that example (as the
vocabulary normalises it), in both layouts, from Parquet and TFRecord, local and in an S3 bucket."""
from __future__ import annotations

import json
import shutil

import pytest

from pipelines.consumers import row_inspect
from pipelines.cli import main
from flanmix_corpus.reader import open_corpus
from pipelines.errors import FlanmixError

from emulators import s3_server  # noqa: F401 - fixture

IN_MEMORY = ["--direct_running_mode=in_memory", "--direct_num_workers=1"]


def _text_records(directory) -> dict[str, dict]:
    info = open_corpus(str(directory))
    return {r["id"]: r for path in info.files("jsonl") for r in map(json.loads, open(path, encoding="utf-8"))}


@pytest.mark.parametrize("kind", ["encdec", "decoder"])
def test_every_decoded_segment_is_the_text_exports_example(demo_full, kind, vocab):
    directory, _ = demo_full[kind]
    info = open_corpus(str(directory))
    m = info.manifest
    # at the demo's own lengths nothing is cut and no exemplar is dropped, so the texts must agree exactly
    assert sum(d["truncated"] for d in m["datasets"].values()) == 0
    assert m["mixing"]["few_shot"]["exemplars_dropped_for_length"] == 0
    records = _text_records(demo_full["text"][0])
    rows = row_inspect.inspect_corpus(str(directory), n=m["num_rows"])
    segments = [s for row in rows for s in row]
    assert len(rows) == m["num_rows"] and len(segments) == m["num_examples"] == len(records)
    assert sorted(s.key for s in segments) == sorted(records)
    texts = [records[s.key][side] for s in segments for side in ("inputs", "targets")]
    ids = vocab.encode_batch(texts)
    for i, s in enumerate(segments):
        in_ids, tg_ids = ids[2 * i], ids[2 * i + 1]
        assert (s.inputs_tokens, s.targets_tokens) == (len(in_ids) + 1, len(tg_ids) + 1), s.key  # + EOS
        assert s.inputs == vocab.decode(in_ids), s.key
        assert s.targets == vocab.decode(tg_ids), s.key
        record = records[s.key]
        assert (s.dataset, s.template_id, s.prompt_setting, s.row_id) == (
            record["dataset"], record["template_id"], record["prompt_setting"], record["row_id"])
    assert [s.row for s in segments] == sorted(s.row for s in segments)
    assert {s.file for s in segments} == set(f"parquet/demo-train-0000{i}-of-00002.parquet" for i in range(2))


def test_tfrecord_and_parquet_decode_to_the_same_segments(demo_full):
    directory, _ = demo_full["decoder"]
    total = open_corpus(str(directory)).manifest["num_rows"]
    strip = lambda rows: [[(s.row, s.segment, s.key, s.inputs, s.targets, s.row_in_file) for s in r] for r in rows]  # noqa: E731
    assert strip(row_inspect.inspect_corpus(str(directory), n=total, source="tfrecord")) == \
        strip(row_inspect.inspect_corpus(str(directory), n=total))


def test_row_and_dataset_selection(demo_full):
    directory, _ = demo_full["encdec"]
    m = open_corpus(str(directory)).manifest
    first_shard_rows = next(f["num_rows"] for f in m["files"] if f["path"] == "parquet/demo-train-00000-of-00002.parquet")
    everything = row_inspect.inspect_corpus(str(directory), n=m["num_rows"])
    picked = row_inspect.inspect_corpus(str(directory), row=first_shard_rows - 1, n=2)  # across the shard boundary
    assert picked == everything[first_shard_rows - 1:first_shard_rows + 1]
    assert picked[1][0].file.endswith("00001-of-00002.parquet") and picked[1][0].row_in_file == 0
    some = row_inspect.inspect_corpus(str(directory), dataset="task1146_country_capital", n=3)
    flat = [s for r in some for s in r]
    expected = [s for r in everything for s in r if s.dataset == "task1146_country_capital"][:3]
    assert flat == expected and len(flat) == 3
    with pytest.raises(FlanmixError, match="has 0 rows|row 99999 does not exist"):
        row_inspect.inspect_corpus(str(directory), row=99999)
    with pytest.raises(FlanmixError, match="no dataset 'nope'"):
        row_inspect.inspect_corpus(str(directory), dataset="nope")
    with pytest.raises(FlanmixError, match="text export"):
        row_inspect.inspect_corpus(str(demo_full["text"][0]))


def test_cli_prints_provenance_and_text(demo_full, capsys):
    directory, _ = demo_full["encdec"]
    assert main(["inspect", str(directory), "--row", "5"]) == 0
    out = capsys.readouterr().out
    row = row_inspect.inspect_corpus(str(directory), row=5)[0]
    assert out.startswith("=== row 5 (parquet/demo-train-00000-of-00002.parquet, row 5)")
    for s in row:
        assert (f"--- segment {s.segment} | dataset {s.dataset} | template {s.template_id} | {s.prompt_setting} | "
                f"row {s.row_id} |") in out
        assert s.inputs in out and s.targets in out
    assert main(["inspect", str(directory), "--dataset", "cot_gsm8k", "-n", "2", "--json", "--from", "tfrecord"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["dataset"] for r in lines] == ["cot_gsm8k", "cot_gsm8k"] and lines[0]["file"].startswith("tfrecord/")
    assert main(["inspect", str(directory), "--row", "1", "--dataset", "x"]) == 2
    assert "not both" in capsys.readouterr().err


def test_vocabulary_is_found_by_hash_and_a_wrong_one_refused(demo_full, tmp_path):
    directory, _ = demo_full["encdec"]
    moved = tmp_path / "corpus"
    shutil.copytree(directory, moved)
    manifest = json.loads((moved / "manifest.json").read_text())
    manifest["vocabulary"]["path"] = "/nowhere/flanmix_demo_sp8k.model"  # built on another machine
    (moved / "manifest.json").write_text(json.dumps(manifest))
    assert row_inspect.inspect_corpus(str(moved), row=0) == row_inspect.inspect_corpus(str(directory), row=0)
    other = tmp_path / "other.model"
    other.write_bytes(b"not this one")
    with pytest.raises(FlanmixError, match="tokenized with vocabulary sha256 .*pass --vocab"):
        row_inspect.inspect_corpus(str(moved), row=0, vocab_path=str(other))


def test_inspect_and_card_on_an_s3_corpus(s3_server, demo_full, capsys):
    """The corpus copied into a bucket (a build publishing there, card included, is test_publish_remote's)."""
    directory, _ = demo_full["encdec"]
    client = s3_server.client()
    prefix = "inspect/demo"
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        client.put_object(Bucket=s3_server.bucket, Key=f"{prefix}/{path.relative_to(directory)}", Body=path.read_bytes())
    remote = f"s3://{s3_server.bucket}/{prefix}"
    assert main(["inspect", str(directory), "--row", "3", "-n", "2", "--json"]) == 0
    local = capsys.readouterr().out
    assert main(["inspect", remote, "--row", "3", "-n", "2", "--json", *s3_server.beam_args]) == 0
    assert capsys.readouterr().out == local and '"row": 4' in local
    key = f"{prefix}/README.md"
    client.delete_object(Bucket=s3_server.bucket, Key=key)
    client.delete_object(Bucket=s3_server.bucket, Key=f"{prefix}/card/tokens_per_row.png")
    assert main(["card", remote, *s3_server.beam_args]) == 0
    assert client.get_object(Bucket=s3_server.bucket, Key=key)["Body"].read() == (directory / "README.md").read_bytes()
    png = client.get_object(Bucket=s3_server.bucket, Key=f"{prefix}/card/tokens_per_row.png")["Body"].read()
    assert png == (directory / "card" / "tokens_per_row.png").read_bytes()
