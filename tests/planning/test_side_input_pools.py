"""What the sampling table carries to every worker: only the exemplar pools that rendering reads."""
from __future__ import annotations

from pipelines.planning.sampling import TaskSampling
from pipelines.planning.weights import side_input_pools


def task(name: str, settings, count: int) -> TaskSampling:
    return TaskSampling(name, "cot", 1.0, count, 1.0, tuple(settings), ("cot",), None)


POOL = (("r1", {"question": "q1"}), ("r2", {"question": "q2"}))


def test_grouped_and_zero_shot_tasks_leave_their_pools_behind():
    tasks = {
        "grouped": task("grouped", [("fs_noopt", 0.5), ("zs_noopt", 0.5)], 500),
        "zero_shot": task("zero_shot", [("zs_noopt", 1.0)], 500),
        "one_row": task("one_row", [("fs_noopt", 1.0)], 1),  # too small to group: renders from its pool
        "no_settings": task("no_settings", [], 500),
    }
    pools = {name: POOL for name in tasks}
    assert side_input_pools(pools, tasks, exemplar_groups=True) == {"one_row": POOL}


def test_without_exemplar_groups_few_shot_tasks_keep_their_pools():
    tasks = {"few": task("few", [("fs_noopt", 1.0)], 500), "zero": task("zero", [("zs_noopt", 1.0)], 500)}
    assert side_input_pools({"few": POOL, "zero": POOL}, tasks, exemplar_groups=False) == {"few": POOL}
