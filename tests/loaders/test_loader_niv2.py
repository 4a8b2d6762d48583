"""NIV2 task files found by task name in a natural-instructions checkout (root arg or env var)."""
from __future__ import annotations

import json

import pytest

from pipelines.errors import LoaderError
from pipelines.loaders import get_loader, offline_ready
from pipelines.loaders.niv2_json import DEFAULT_ROOT, ROOT_ENV, task_path

TASK = {
    "Definition": ["Answer with the capital city of the country."],
    "Positive Examples": [{"input": "France", "output": "Paris", "explanation": "Paris is the capital."}],
    "Instances": [{"id": "task9999-a", "input": "Italy", "output": ["Rome"]}, {"id": "task9999-b", "input": "Peru", "output": []}],
}


def checkout(tmp_path):
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "task9999_capitals.json").write_text(json.dumps(TASK), encoding="utf-8")
    return tmp_path


def read(args):
    loader = get_loader("niv2_json")
    return [row for shard in loader.plan("task9999_capitals", "train", "train", args) for row in loader.read(shard)]


def test_task_in_a_local_checkout(tmp_path):
    args = {"task": "task9999_capitals", "root": str(checkout(tmp_path))}
    assert offline_ready("niv2_json", args)
    rows = read(args)
    assert rows[0].row_id == "task9999-a" and rows[0].fields == {
        "definition": "Answer with the capital city of the country.",
        "positive_examples": [{"input": "France", "output": "Paris", "explanation": "Paris is the capital."}],
        "input": "Italy", "output": "Rome", "outputs": ["Rome"]}
    assert rows[1].fields is None and rows[1].error == "instance has no 'output'"


def test_root_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(ROOT_ENV, str(checkout(tmp_path)))
    assert task_path({"task": "task9999_capitals"}) == f"{tmp_path}/tasks/task9999_capitals.json"
    assert [r.row_id for r in read({"task": "task9999_capitals"})] == ["task9999-a", "task9999-b"]
    monkeypatch.delenv(ROOT_ENV)
    assert task_path({"task": "t"}) == f"{DEFAULT_ROOT}/tasks/t.json"


def test_unreachable_root_says_what_was_tried_and_how_to_get_a_checkout():
    args = {"task": "task9999_capitals", "root": "http://127.0.0.1:9/natural-instructions"}
    assert not offline_ready("niv2_json", args)
    with pytest.raises(LoaderError) as err:
        read(args)
    message = str(err.value)
    assert "tried to reach http://127.0.0.1:9/natural-instructions/tasks/task9999_capitals.json" in message
    assert "git clone https://github.com/allenai/natural-instructions" in message and ROOT_ENV in message


def test_missing_task_in_a_local_checkout(tmp_path):
    with pytest.raises(LoaderError, match="no file matches .*task0000_missing.json.*git clone"):
        get_loader("niv2_json").plan("x", "train", "train", {"task": "task0000_missing", "root": str(checkout(tmp_path))})
