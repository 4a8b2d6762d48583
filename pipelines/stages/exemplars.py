"""GroupExemplars: (dataset, [RawRow]) batches -> the same batches for tasks without few-shot, and one
(dataset, rows, ordinal) element per exemplar group of the others (`planning.exemplars`).

    rows | KeyByGroup | [SpillGroups (local runner)] | GroupByExemplarGroup | ToGroups | RenderTemplates

Every batch takes the one shuffle (rows of tasks that are not grouped, and rows that will be
dead-lettered, under keys of their own), so there is one path and no Flatten across stages. On the
local runner the keyed rows are spilled to sorted run files first (`stages.spill`), so the shuffle
carries file references: the FnApiRunner holds whatever crosses a GroupByKey in memory. Nothing is
dropped here: what goes in comes out, which the build's row ledger checks (`stages.ledger`).
"""
from __future__ import annotations

import typing

import apache_beam as beam

from pipelines.definitions.fieldtypes import field_problem
from pipelines.planning.exemplars import group_of, num_groups, wants_groups
from pipelines.planning.plan import BuildPlan
from pipelines.planning.slices import ExemplarSlice
from pipelines.stages import spill

def group_ordinals(table, group_size: int) -> dict[str, tuple[int, int]]:
    """task -> (groups, ordinal of its first group): the tasks' groups numbered one after another."""
    out, start = {}, 0
    for name in sorted(table.tasks):
        task = table.tasks[name]
        if wants_groups(task.settings, task.count):
            groups = num_groups(task.count, group_size)
            out[name] = (groups, start)
            start += groups
    return out


class GroupOrdinalsFn(beam.DoFn):
    """A DoFn that reads `group_ordinals`, made once per side-input object (it is O(tasks)). `plan`:
    anything with `few_shot.group_size` (an ExemplarSlice)."""

    def __init__(self, plan):
        self.plan = plan
        self._cache = (None, None)

    def _ordinals(self, table):
        if self._cache[0] is not table:
            self._cache = (table, group_ordinals(table, self.plan.few_shot.group_size))
        return self._cache[1]


@beam.typehints.with_output_types(typing.Tuple[typing.Any, typing.Any])
class KeyRowsFn(GroupOrdinalsFn):
    """(dataset, [RawRow]) -> ((dataset, group, ""), [valid rows]) for grouped tasks; everything
    else (other tasks, unreadable rows, rows with field problems) keeps its batch, keyed
    (dataset, -1, first row id), to be rendered or dead-lettered as before."""

    def process(self, element, table):
        dataset, rows = element
        groups = self._ordinals(table).get(dataset)
        if groups is None:  # a batch as it is, under a key of its own (group -1)
            yield (dataset, -1, rows[0].row_id if rows else ""), rows
            return
        declared = self.plan.datasets[dataset].fields
        keyed: dict[int, list] = {}
        rest = []
        for row in rows:
            if row.error is not None or field_problem(row.fields, declared) is not None:
                rest.append(row)
            else:
                keyed.setdefault(group_of(self.plan.seed, dataset, row.row_id, groups[0]), []).append(row)
        if rest:
            yield (dataset, -1, rest[0].row_id), rest
        for g in sorted(keyed):
            yield (dataset, g, ""), keyed[g]


def row_order(row) -> str:
    """Sort key of raw rows in spill runs (`stages.spill`)."""
    return row.row_id


def row_bytes(row) -> int:
    """Approximate size of a raw row, for the spill budget."""
    fields = row.fields or {}
    return 256 + len(row.raw or "") + sum(len(v) for v in fields.values() if isinstance(v, str))


class ToGroupFn(GroupOrdinalsFn):
    """((dataset, group, _), [[rows]]) -> (dataset, rows sorted by id, ordinal of the group); the
    batches of group -1 (not grouped) come out as they went in, (dataset, rows)."""

    def process(self, element, table):
        (dataset, g, _), lists = element
        members = []
        for part in lists:  # row lists, or spill runs of them on the local runner
            members.extend(spill.read_run(part) if isinstance(part, spill.Run) else part)
        if g < 0:
            yield dataset, members
            return
        members.sort(key=lambda r: r.row_id)
        yield dataset, members, self._ordinals(table)[dataset][1] + g


class GroupExemplars(beam.PTransform):
    """Row batches -> the same batches for tasks without few-shot, and one (dataset, rows, ordinal)
    element per exemplar group of the others. RenderTemplates takes both."""

    def __init__(self, plan: BuildPlan, table, spill_dir: str | None = None):
        """`spill_dir`: spill the keyed rows to sorted run files there (`stages.spill`) so the
        shuffle carries file references (the local runner holds whatever it shuffles in memory)."""
        super().__init__()
        self.plan, self.table, self.spill_dir = ExemplarSlice.of(plan), table, spill_dir

    def expand(self, batches):
        # Batches of tasks that are not grouped (and rows that will be dead-lettered) take the same
        # shuffle under keys of their own: one path, no Flatten across stages.
        table = beam.pvalue.AsSingleton(self.table)
        keyed = batches | "KeyByGroup" >> beam.ParDo(KeyRowsFn(self.plan), table)
        if self.spill_dir is not None:
            keyed = keyed | "SpillGroups" >> beam.ParDo(spill.SpillRunsFn(self.spill_dir, row_order, size_of=row_bytes))
        return (
            keyed
            | "GroupByExemplarGroup" >> beam.GroupByKey()
            | "ToGroups" >> beam.ParDo(ToGroupFn(self.plan), table)
        )
