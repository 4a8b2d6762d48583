"""Super-NaturalInstructions (NIV2) task files: one JSON per task, as in allenai/natural-instructions.

Each instance becomes one row that also carries the task-level fields a template needs:
`definition` (str), `positive_examples` (list of {input, output, explanation}), `input` (str),
`output` (the first reference output) and `outputs` (all references). Row ids are the instance ids
of the file (`task036-…`), or `<task>-<index>` where a file has none.
"""
from __future__ import annotations

import json
from typing import Any, Iterator, Mapping

from pipelines.errors import LoaderError
from pipelines.loaders import files
from pipelines.loaders.base import RawRow, SourceShard


def _definition(task: Mapping[str, Any]) -> Any:
    value = task.get("Definition")
    if isinstance(value, list) and len(value) == 1:
        return value[0]
    return value


class Niv2JsonLoader:
    type_name = "niv2_json"

    def plan(self, dataset: str, split: str, source_split: str, args: Mapping[str, Any]) -> list[SourceShard]:
        pattern = args.get("path")
        if not pattern:
            raise LoaderError(
                f"{dataset}: niv2_json loader needs loader.args.path (a task file such as "
                f"natural-instructions/tasks/task036_....json, local or gs://)"
            )
        paths = files.expand(pattern, f"dataset {dataset} (niv2_json)")
        return [SourceShard(dataset, split, self.type_name, {**args, "path": p}, i, size) for i, (p, size) in enumerate(paths)]

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
