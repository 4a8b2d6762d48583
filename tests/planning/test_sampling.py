"""Per-row sampling decisions: expected copies, settings, exemplars (never the row itself)."""
from __future__ import annotations

import numpy as np
import pytest

from pipelines.definitions.mixtures import FewShotConfig
from pipelines.planning.fewshot import assemble_few_shot
from pipelines.planning.sampling import choose_variant, copies, supported_settings, templates_for_setting
from pipelines.definitions.templates import Template

ZS = Template("zs", "f", "zero_shot", False, False, "Q: {{ q }}", "{{ a }}")
ZS_OPT = Template("zs_opt", "f", "zero_shot", True, False, "Q: {{ q }} {{ answer_choices }}", "{{ a }}", answer_choices="x ||| y")
FS_OWN = Template("fs_own", "f", "few_shot", False, False, "{{ q }}", "{{ a }}")


@pytest.mark.parametrize("rate", [0.0, 0.25, 1.0, 2.6])
def test_copies_match_the_rate_on_average_and_are_deterministic(rate):
    got = [copies(rate, 0, "task", f"r{i}") for i in range(20000)]
    assert got == [copies(rate, 0, "task", f"r{i}") for i in range(20000)]
    assert abs(np.mean(got) - rate) < 0.02
    assert set(got) <= {int(rate), int(rate) + 1}


def test_settings_only_offer_what_templates_support():
    wanted = {"zs_opt": 1, "zs_noopt": 1, "fs_opt": 1, "fs_noopt": 1}
    assert supported_settings([ZS], wanted, pool_size=0) == (("zs_noopt", 1.0),)
    assert supported_settings([ZS], wanted, pool_size=5) == (("fs_noopt", 0.5), ("zs_noopt", 0.5))
    assert dict(supported_settings([ZS, ZS_OPT], wanted, pool_size=5)) == pytest.approx({s: 0.25 for s in wanted})
    assert templates_for_setting([ZS, FS_OWN], "fs_noopt", pool_size=0) == [FS_OWN]


def test_few_shot_exemplars_come_from_the_pool_and_never_include_the_row():
    pool = tuple((f"r{i}", {"q": f"q{i}", "a": f"a{i}"}) for i in range(6))
    cfg = FewShotConfig(min_exemplars=2, max_exemplars=5)
    ks = []
    for i in range(6):
        v = choose_variant([ZS], (("fs_noopt", 1.0),), pool, cfg, 0, "task", f"r{i}", f"r{i}")
        ids = [row_id for row_id, _ in v.exemplars]
        assert f"r{i}" not in ids and len(set(ids)) == len(ids)
        assert 2 <= len(ids) <= 5 and v.setting == "fs_noopt"
        ks.append(len(ids))
        assert v == choose_variant([ZS], (("fs_noopt", 1.0),), pool, cfg, 0, "task", f"r{i}", f"r{i}")
    # a copy of a row (upsampling) gets its own draw but still excludes the row
    v = choose_variant([ZS], (("fs_noopt", 1.0),), pool, cfg, 0, "task", "r1", "r1#1")
    assert "r1" not in [r for r, _ in v.exemplars]


def test_assemble_puts_exemplars_before_the_query():
    cfg = FewShotConfig(example_separator="\n\n")
    assert assemble_few_shot(["Q: 1\n2", "Q: 3\n4"], "Q: 5", cfg) == "Q: 1\n2\n\nQ: 3\n4\n\nQ: 5"


def test_few_shot_prompt_is_fitted_to_the_budget_by_dropping_whole_exemplars(vocab):
    from pipelines.planning.plan import BuildPlan
    from pipelines.stages.tokenize import TokenizeBatchFn

    plan = BuildPlan("m", 0, "train", 40, 16, "truncate", 1, {}, (), {}, "v", "", 8000,
                     few_shot=FewShotConfig(example_separator="\n\n"))
    fn = TokenizeBatchFn(plan, vocab.model_proto, 1)
    fn.setup()
    shots = tuple(f"Question number {i} about apples and pears\nanswer {i}" for i in range(4))
    query = "Question about bananas"
    ids, k = fn._fit_pool_shots(query, vocab.encode_batch([query])[0], shots)
    assert 0 < k < 4 and len(ids) <= 39
    assert ids == vocab.encode_batch([assemble_few_shot(shots[:k], query, plan.few_shot)])[0]
    assert vocab.decode(ids).endswith(query)
