"""Super-NaturalInstructions (NIV2) task files: one JSON per task, as in allenai/natural-instructions.

Where the file is (`loader.args`): `path` (a file, glob or URL), or `task` (e.g. task036_qasc_...),
looked up as `<root>/tasks/<task>.json` with `root` taken from loader.args.root, else
$FLANMIX_NIV2_ROOT (a local checkout of natural-instructions, or a gs:// / s3:// copy), else the
GitHub repository over https (`DEFAULT_ROOT`).

Each instance becomes one row that also carries the task-level fields a template needs:
`definition` (str), `positive_examples` (list of {input, output, explanation}), `input` (str),
`output` (the first reference output) and `outputs` (all references). Row ids are the instance ids
of the file (`task036-…`), or `<task>-<index>` where a file has none.
"""
from __future__ import annotations

import glob
import json
from typing import Any, Iterator, Mapping

from pipelines.errors import LoaderError
from pipelines.loaders import files
from pipelines.loaders.base import RawRow, SourceShard


def _local_matches(path: str) -> list[str]:
    return glob.glob(path[len("file://"):] if path.startswith("file://") else path)


def _definition(task: Mapping[str, Any]) -> Any:
    value = task.get("Definition")
    if isinstance(value, list) and len(value) == 1:
        return value[0]
    return value


DEFAULT_ROOT = "https://raw.githubusercontent.com/allenai/natural-instructions/master"
ROOT_ENV = "FLANMIX_NIV2_ROOT"


def task_path(args: Mapping[str, Any]) -> str | None:
    """The file an entry reads: its `path`, or `<root>/tasks/<task>.json`."""
    return files.source_path(args, "task", "tasks/{}.json", ROOT_ENV, DEFAULT_ROOT)


class Niv2JsonLoader:
    type_name = "niv2_json"

    def plan(self, dataset: str, split: str, source_split: str, args: Mapping[str, Any]) -> list[SourceShard]:
        pattern = task_path(args)
        if not pattern:
            raise LoaderError(
                f"{dataset}: niv2_json loader needs loader.args.path (a task file such as "
                f"natural-instructions/tasks/task036_....json, local or gs://) or loader.args.task"
            )
        try:
            paths = files.expand(pattern, f"dataset {dataset} (niv2_json)")
        except LoaderError as exc:
            how = (
                f" To provide it locally: `git clone https://github.com/allenai/natural-instructions` and set "
                f"${ROOT_ENV} (or loader.args.root) to the checkout; a gs:// or s3:// copy of it works too."
                if args.get("task") else ""
            )
            raise LoaderError(files.with_hint(f"{exc}{how}", args)) from None
        return [SourceShard(dataset, split, self.type_name, {**args, "path": p}, i, size) for i, (p, size) in enumerate(paths)]

    def offline_ready(self, args: Mapping[str, Any], source_split: str = "train") -> bool:
        path = task_path(args)
        return bool(path) and files.is_local(path) and bool(_local_matches(path))

    def read(self, shard: SourceShard) -> Iterator[RawRow]:
        try:
            task = json.loads(files.read_bytes(shard.args["path"]).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise LoaderError(f"{shard.dataset}: {shard.args['path']} is not a valid NIV2 task JSON: {exc}") from None
        definition = _definition(task)
        positives = [
            {"input": ex.get("input"), "output": ex.get("output"), "explanation": ex.get("explanation", "")}
            for ex in task.get("Positive Examples", []) or []
        ]
        name = shard.dataset
        for index, instance in enumerate(task.get("Instances", []) or []):
            row_id = str(instance.get("id") or f"{name}-{index}")
            outputs = instance.get("output")
            if isinstance(outputs, str):
                outputs = [outputs]
            if not isinstance(outputs, list) or not outputs:
                yield RawRow(row_id, None, "instance has no 'output'", json.dumps(instance, ensure_ascii=False))
                continue
            yield RawRow(
                row_id,
                {
                    "definition": definition,
                    "positive_examples": positives,
                    "input": instance.get("input"),
                    "output": outputs[0],
                    "outputs": list(outputs),
                },
            )
