"""Few-shot exemplars from the whole split of a task, spread evenly, chosen by keyed hashes.

Flan 2022 drew exemplars from a task's whole train split (flan_mechanics.md §8). A fixed pool of a few
rows per task would show each of them thousands of times in a big task, so instead:

- **Groups.** Every valid row of a task that has a few-shot setting is hashed into one of
  `G = max(1, rows // group_size)` groups by (seed, task, row id) (`group_of`); one GroupByKey on
  (task, group) brings a group's rows together (`stages.exemplars.GroupExemplars`). Groups hold ~`group_size` rows
  (64 by default; a binomial spread, never a hot key: a task's rows are split evenly whatever their
  order or size), so a worker holds one group's raw rows at a time, and the shuffle carries each row
  once, not once per prompt that shows it.
- **Windows.** Inside a group the rows are ordered by a keyed hash; copy `c` of the row at position
  `i` shows the `k` rows after it, starting `c * max_exemplars` further on (`window`), wrapping
  around and skipping the row itself. So a prompt never contains its own row, and every row is
  offered about `P(few-shot) * mean k` times (the manifest reports max and mean reuse per group
  member, `reuse_counts`), instead of a pool row's thousands.
- **Settings.** The prompt setting of each copy is assigned by systematic sampling over the group's
  copies in keyed order, with a low-discrepancy offset per group (`assign_settings`): a group's
  realized shares are within one copy of the target, and the rounding of many small tasks cancels
  instead of adding up, so per-collection shares land on their targets.
- **Styles** (Flan's two): the query's template for every exemplar (x-shot), or, for a
  `template_mix` share of prompts, a keyed template of the same setting per exemplar. The separator
  between exemplars is chosen once per task among `SEPARATORS` (keyed by seed and task). A template
  marked `lead_once` (NIV2's) states the paragraphs it shares with its exemplars (the task
  definition) once at the top; `num_exemplars` fixes k (NIV2's x-shot: 2).
- **Budget.** `fit` keeps the longest prefix of exemplars whose assembled prompt fits the inputs
  length (exemplars get what the query leaves; an exemplar is never cut). When none fits, or a task's
  group has no other row, the copy is written zero-shot with the same template and counted
  (`counters.FEWSHOT_FELL_BACK`, `counters.FEWSHOT_NO_EXEMPLAR`).

Everything is a pure function of keyed hashes and the group's membership, which depends only on
(seed, task, row id): results do not depend on runner, workers or bundle order.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping, Sequence

from pipelines import counters
from pipelines.definitions.mixtures import FewShotConfig
from pipelines.definitions.templates import Template
from pipelines.errors import RenderError
from pipelines.planning.fewshot import estimated_fit
from pipelines.planning.hashing import keyed_choice, keyed_hash

_TWO_64 = float(2**64)
_PHI = 0.6180339887498949  # golden-ratio step: group offsets spread evenly over [0, 1)
# Example separators, one per task (keyed): blank lines as in most of Flan's patterns, and rule lines.
SEPARATORS = ("\n\n", "\n\n\n", "\n", "\n\n---\n\n", "\n\n***\n\n")


# --- pure decisions --------------------------------------------------------------------------------

def wants_groups(settings: Sequence[tuple[str, float]], count: int) -> bool:
    """A task is grouped when it has a few-shot setting and at least two rows."""
    return count >= 2 and any(s.startswith("fs") and p > 0 for s, p in settings)


def num_groups(count: int, group_size: int) -> int:
    return max(1, count // max(2, group_size))


def group_of(seed: int, task: str, row_id: str, groups: int) -> int:
    return keyed_choice(groups, seed, "exemplar_group", task, row_id)


def separator(seed: int, task: str) -> str:
    """The task's example separator (one per task, like Flan's, but keyed instead of unseeded)."""
    return SEPARATORS[keyed_choice(len(SEPARATORS), seed, "example_separator", task)]


def window(position: int, n: int, copy: int, k: int, max_k: int) -> tuple[int, ...]:
    """Positions of the exemplars of copy `copy` of the row at `position` in a group of `n` rows:
    `k` consecutive others after it (wrapping, never `position`), copy c starting c*max_k later."""
    k = min(k, n - 1)
    return tuple((position + 1 + ((copy * max_k + t) % (n - 1))) % n for t in range(k))


def group_offset(seed: int, ordinal: int) -> float:
    """Start of the systematic sample of group number `ordinal` (a low-discrepancy sequence)."""
    base = keyed_hash(seed, "setting_offset") / _TWO_64
    return (base + _PHI * ordinal) % 1.0


def assign_settings(keys: Sequence[str], settings: Sequence[tuple[str, float]], seed: int, task: str,
                    offset: float) -> dict[str, str]:
    """copy key -> prompt setting: the copies in keyed order take points offset + j/n of [0, 1), each
    mapped through the settings' cumulative shares. Every setting gets n*p copies, +-1."""
    order = sorted(keys, key=lambda key: (keyed_hash(seed, "setting_order", task, key), key))
    n = len(order)
    out = {}
    for j, key in enumerate(order):
        u = (offset + j / n) % 1.0
        chosen, acc = settings[-1][0], 0.0
        for name, p in settings:
            acc += p
            if u < acc:
                chosen = name
                break
        out[key] = chosen
    return out


@dataclass(frozen=True)
class CopyChoice:
    """What one copy of a grouped row becomes."""

    template: Template
    setting: str
    exemplars: tuple[int, ...] = ()  # indexes into the group's rows
    shot_templates: tuple[Template, ...] = ()  # one per exemplar
    style: str = "zero_shot"  # zero_shot | own (a few-shot template as written) | same_template | template_mix


def choose_copy(templates: Sequence[Template], setting: str, n_rows: int, position: int, copy: int,
                few_shot: FewShotConfig, seed: int, task: str, key: str) -> CopyChoice:
    """Template, exemplars and style of one copy whose setting is decided (see `assign_settings`)."""
    from pipelines.planning.sampling import templates_for_setting

    shots, opt = setting.split("_")
    candidates = templates_for_setting(templates, setting, n_rows)
    if not candidates:  # e.g. a one-row group cannot show another row: the zero-shot form
        setting = "zs_" + opt
        candidates = templates_for_setting(templates, setting, n_rows) or list(templates)
    t = candidates[keyed_choice(len(candidates), seed, "template", task, key)]
    if setting.startswith("zs") or t.shots == "few_shot":
        return CopyChoice(t, setting, style="own" if t.shots == "few_shot" else "zero_shot")
    if t.num_exemplars:
        k = t.num_exemplars
    else:
        span = few_shot.max_exemplars - few_shot.min_exemplars + 1
        k = few_shot.min_exemplars + keyed_choice(span, seed, "k", task, key)
    max_k = max(few_shot.max_exemplars, t.num_exemplars or 0)
    picked = window(position, n_rows, copy, k, max_k)
    mixable = [c for c in candidates if c.shots == "zero_shot"]
    if (not t.num_exemplars and len(mixable) > 1
            and keyed_hash(seed, "template_mix", task, key) / _TWO_64 < few_shot.template_mix):
        shot_templates = tuple(mixable[keyed_choice(len(mixable), seed, "mix_template", task, key, str(i))]
                               for i in range(len(picked)))
        return CopyChoice(t, setting, picked, shot_templates, "template_mix")
    return CopyChoice(t, setting, picked, (t,) * len(picked), "same_template")


def plan_group(rows: Sequence, copies: Sequence[int], templates: Sequence[Template],
               settings: Sequence[tuple[str, float]], few_shot: FewShotConfig, seed: int, task: str,
               ordinal: int) -> tuple[dict[str, CopyChoice], list[int], int]:
    """(copy key -> CopyChoice, offered uses per row, copies assigned a few-shot setting that had to
    be zero-shot for want of another row) for one group. `rows` are the group's valid rows (objects
    with `row_id`), `copies[i]` the number of copies of row i in the corpus."""
    from pipelines.planning.sampling import copy_key

    n = len(rows)
    order = sorted(range(n), key=lambda i: (keyed_hash(seed, "exemplar_order", task, rows[i].row_id), rows[i].row_id))
    position = {i: p for p, i in enumerate(order)}
    keys = [(i, c, copy_key(rows[i].row_id, c)) for i in range(n) for c in range(copies[i])]
    setting_of = assign_settings([k for _, _, k in keys], settings, seed, task, group_offset(seed, ordinal)) if keys else {}
    uses = [0] * n
    out = {}
    no_exemplar = 0
    for i, c, key in keys:
        choice = choose_copy(templates, setting_of[key], n, position[i], c, few_shot, seed, task, key)
        no_exemplar += choice.setting != setting_of[key]
        rows_shown = tuple(order[p] for p in choice.exemplars)
        choice = CopyChoice(choice.template, choice.setting, rows_shown, choice.shot_templates, choice.style)
        for r in rows_shown:
            uses[r] += 1
        out[key] = choice
    return out, uses, no_exemplar


# --- assembling and fitting the prompt ---------------------------------------------------------------

@dataclass(frozen=True)
class FewShotPrompt:
    """A few-shot prompt in parts, so Tokenize can drop whole exemplars from the end to fit:
    `lead` (stated once; "" for none), the exemplars, then the query's `body`, joined by `separator`."""

    lead: str
    shots: tuple[str, ...]
    body: str
    separator: str

    def text(self, k: int) -> str:
        return self.separator.join(([self.lead] if self.lead else []) + list(self.shots[:k]) + [self.body])


def shared_lead(texts: Sequence[str]) -> str:
    """The leading paragraphs (up to a blank line) that every text starts with; "" if none."""
    if len(texts) < 2:
        return ""
    common = os.path.commonprefix(list(texts))
    cut = common.rfind("\n\n")
    return common[:cut] if cut > 0 else ""


def assemble(query: str, shots: Sequence[str], sep: str, lead_once: bool) -> FewShotPrompt:
    """The parts of a prompt; with `lead_once` the shared lead is taken out of shots and query."""
    lead = shared_lead([query, *shots]) if lead_once else ""
    if lead:
        shots = [s[len(lead):].lstrip("\n") for s in shots]
        query = query[len(lead):].lstrip("\n")
    return FewShotPrompt(lead, tuple(shots), query, sep)


def fit_batch(vocab, query_ids: Sequence[list[int]], prompts: Sequence[FewShotPrompt], budget: int
              ) -> list[tuple[list[int], int]]:
    """For each prompt, (ids of the longest prompt within `budget` tokens, exemplars kept): the longest
    prefix of its exemplars that fits; with 0 exemplars the query is left alone (its ids as given).

    Each prompt estimates from per-part counts, then goes down until its joined text truly fits and
    up while one more exemplar still fits (the estimate counts a join token per part, so it can stop
    one early). The texts every prompt needs next are encoded together, one SentencePiece call per
    step over the whole batch, on all cores (`num_threads=-1`): a call per text held the GIL for every
    prompt in turn and kept few-shot builds at a tenth of zero-shot's speed. An encoding is never
    asked for twice. The answers are those of fitting one prompt at a time (tested)."""
    n = len(prompts)
    heads, shots = [], []
    flat: list[str] = []
    for prompt in prompts:
        parts = [prompt.lead, prompt.body, *prompt.shots] if prompt.lead else [prompt.body, *prompt.shots]
        flat.extend(parts)
    ids = vocab.encode_batch(flat, num_threads=-1) if flat else []
    pos = 0
    for prompt in prompts:
        width = len(prompt.shots) + (2 if prompt.lead else 1)
        part = ids[pos:pos + width]
        pos += width
        heads.append(len(part[0]) + len(part[1]) + 2 if prompt.lead else len(part[0]) + 1)
        shots.append([len(s) for s in (part[2:] if prompt.lead else part[1:])])
    k = [estimated_fit(shots[i], heads[i], budget) for i in range(n)]
    down = [True] * n  # phase: down (until a text fits), then up (while one more fits)
    full: list = [None] * n
    done = [False] * n
    known: list[dict[int, list[int]]] = [{} for _ in range(n)]  # k -> ids of prompt.text(k)

    def advance(i: int) -> int | None:
        """Walk prompt i's steps as far as its known encodings go: the k it needs next, or None when done."""
        while True:
            if down[i]:
                if k[i] == 0:
                    down[i], full[i] = False, None
                    continue
                got = known[i].get(k[i])
                if got is None:
                    return k[i]
                if len(got) <= budget:
                    down[i], full[i] = False, got
                else:
                    k[i] -= 1
                continue
            if not (k[i] < len(shots[i]) and (k[i] == 0 or full[i] is not None)):
                done[i] = True
                return None
            got = known[i].get(k[i] + 1)
            if got is None:
                return k[i] + 1
            if len(got) > budget:
                done[i] = True
                return None
            full[i], k[i] = got, k[i] + 1

    while True:
        wanted = [(i, need) for i in range(n) if not done[i] for need in [advance(i)] if need is not None]
        if not wanted:
            break
        encoded = vocab.encode_batch([prompts[i].text(need) for i, need in wanted], num_threads=-1)
        for (i, need), got in zip(wanted, encoded):
            known[i][need] = got
    return [(full[i], k[i]) if k[i] else (query_ids[i], 0) for i in range(n)]


def render_copy(compiled: Mapping, choice: CopyChoice, rows: Sequence, index: int, few_shot: FewShotConfig,
                sep: str, option_format=None, marker_answer: bool = False, seed: int = 0, task: str = ""):
    """(inputs, targets, FewShotPrompt or (), exemplars that failed to render) of one copy of row
    `index`. The query's RenderError propagates (a dead letter); a failing exemplar is left out.
    Each row renders with its own row key (seed, task, row id), as a zero-shot render of it would."""
    from pipelines.definitions.templates import render

    inputs, targets = render(compiled[choice.template.id], rows[index].fields, (seed, task, rows[index].row_id),
                             option_format, marker_answer)
    if not choice.exemplars:
        return inputs, targets, (), 0
    shots, failed = [], 0
    for r, t in zip(choice.exemplars, choice.shot_templates):
        try:
            ex_in, ex_tg = render(compiled[t.id], rows[r].fields, (seed, task, rows[r].row_id), option_format, marker_answer)
        except RenderError:
            failed += 1
            continue
        shots.append(ex_in + few_shot.target_separator + ex_tg)
    if not shots:
        return inputs, targets, (), failed
    return inputs, targets, assemble(inputs, shots, sep, choice.template.lead_once), failed


def reuse_counts(task: str, uses: Sequence[int]) -> dict:
    """Report counters: how many of the task's group members were offered n times, per n."""
    out: dict = {}
    for n in uses:
        key = counters.EXEMPLAR_REUSE.key(task, str(n))
        out[key] = out.get(key, 0) + 1
    return out


def reuse_summary(counts: Mapping, collection_of: Mapping[str, str]) -> dict:
    """The manifest's exemplar reuse: over the rows of grouped tasks, how often each was offered as an
    exemplar (before length fitting, so an upper bound on how often it is shown): max and mean,
    overall and per collection."""
    def summary(items):
        rows = sum(v for _, v in items)
        total = sum(int(n) * v for n, v in items)
        return {"rows": rows, "max": max((int(n) for n, v in items if v), default=0),
                "mean": round(total / rows, 4) if rows else 0.0}

    by_col: dict = {}
    every = []
    for key, v in counts.items():
        if counters.EXEMPLAR_REUSE.matches(key):
            item = (key[2], v)
            every.append(item)
            by_col.setdefault(collection_of.get(key[1], "?"), []).append(item)
    return {**summary(every), "per_collection": {c: summary(items) for c, items in sorted(by_col.items())}}
