"""Every counter of a build, declared once: its name, what it counts, and where it lands.

Two kinds:

- **Report counters** (`Counter`) are exact: a stage adds them to the Report on its STATS output,
  `stages.finish.MergeReports` sums them, and `publish.manifest` reads them into manifest.json at
  the place `manifest` names. A key is the counter's name plus its `per` parts, e.g.
  `SAMPLED_OUT.key("cot_gsm8k") == ("sampled_out", "cot_gsm8k")`.
- **Progress metrics** (`Metric`) are Beam counters in namespace `flanmix`: what `runner.progress`
  prints while a build runs and what Dataflow shows on the job page. They may count a retried bundle
  twice, so the manifest never reads them. A per-dataset metric is named `NAME/DATASET`.
"""
from __future__ import annotations

from collections import Counter as _Tally
from dataclasses import dataclass

from apache_beam.metrics import Metrics

NAMESPACE = "flanmix"


@dataclass(frozen=True)
class Counter:
    name: str
    per: tuple[str, ...]  # what the key's further parts name, e.g. ("dataset",)
    meaning: str
    manifest: str  # where the merged count lands in manifest.json

    def key(self, *parts: str) -> tuple:
        if len(parts) != len(self.per):
            raise ValueError(f"counter {self.name} is per {self.per}, got {parts}")
        return (self.name, *parts)

    def matches(self, key: tuple) -> bool:
        return key[0] == self.name


READ = Counter("read", ("dataset",), "source rows read (also unparseable ones)", "datasets.D.rows_read")
SAMPLED_OUT = Counter("sampled_out", ("dataset",), "rows the mixture's rate kept no copy of",
                      "datasets.D.downsampled, mixing.downsampled")
UPSAMPLED_COPIES = Counter("upsampled_copies", ("dataset",), "copies of a row beyond the first",
                           "datasets.D.upsampled, mixing.upsampled")
EXEMPLAR_RENDER_FAILED = Counter("exemplar_render_failed", ("dataset",), "few-shot exemplars that did not render",
                                 "mixing.few_shot.exemplars_not_renderable")
FEWSHOT_K = Counter("fewshot_k", ("exemplars",), "few-shot prompts by the exemplars kept after fitting",
                    "mixing.few_shot.exemplars_per_prompt")
FEWSHOT_DROPPED = Counter("fewshot_exemplars_dropped", ("dataset",), "exemplars dropped whole for length",
                          "mixing.few_shot.exemplars_dropped_for_length")
FEWSHOT_FELL_BACK = Counter("fewshot_fell_back_to_zero_shot", ("dataset",),
                            "few-shot prompts written zero-shot (same template) because no exemplar fitted in the "
                            "inputs length left by the query, or every exemplar failed to render",
                            "mixing.few_shot.fell_back_to_zero_shot")
FEWSHOT_NO_EXEMPLAR = Counter("fewshot_no_exemplar", ("dataset",),
                              "copies assigned a few-shot setting written zero-shot because their exemplar group "
                              "had no other row to show", "mixing.few_shot.no_exemplar_zero_shot")
FEWSHOT_STYLE = Counter("fewshot_style", ("style",),
                        "few-shot prompts by style: same_template (Flan's x-shot) or template_mix",
                        "mixing.few_shot.styles")
EXEMPLAR_REUSE = Counter("exemplar_reuse", ("dataset", "uses"),
                         "rows of grouped tasks by how many prompts were offered them as an exemplar (before "
                         "length fitting)", "mixing.few_shot.exemplar_reuse (max, mean, per collection)")
OPTION_FORMAT = Counter("option_format", ("format",), "options blocks rendered per option format",
                        "mixing.option_formats.used")
OPTION_MARKER_ANSWER = Counter("option_marker_answer", (), "examples answered with the marker of the right choice",
                               "mixing.option_formats.marker_answers")
RENDERED_EXAMPLES = Counter("rendered_examples", ("dataset",), "examples RenderTemplates emitted (the row ledger)",
                            "checked by stages.ledger before publishing; not in the manifest")
TRUNCATED = Counter("truncated", ("dataset",), "examples cut to the lengths (--overlong truncate)", "datasets.D.truncated")
ROWS = Counter("rows", (), "output rows (packed sequences, or jsonl lines)", "num_rows")
INPUTS_NONPAD = Counter("inputs_nonpad", (), "non-pad inputs tokens in packed rows", "packing_efficiency.inputs")
TARGETS_NONPAD = Counter("targets_nonpad", (), "non-pad targets tokens in packed rows", "packing_efficiency.targets")
LOSS_TOKENS = Counter("loss_tokens", (), "decoder slots with loss (the targets)", "packing_efficiency.loss")
INPUTS_TOKENS = Counter("inputs_tokens", ("dataset",), "inputs tokens written, with EOS", "datasets.D.inputs_tokens")
TARGETS_TOKENS = Counter("targets_tokens", ("dataset",), "targets tokens written, with EOS", "datasets.D.targets_tokens")
EXAMPLES = Counter("examples", ("dataset",), "examples written", "datasets.D.examples, num_examples")
TEMPLATE = Counter("template", ("template_id",), "examples written per template", "templates_used")
SETTING = Counter("setting", ("setting",), "examples written per prompt setting", "mixing.prompt_settings.S.examples")
TASK_SETTING = Counter("task_setting", ("dataset", "setting"), "examples written per dataset and prompt setting",
                       "datasets.D.prompt_settings")
DEAD_LETTERS = Counter("dead_letter", ("dataset", "stage"), "rows or examples dead-lettered, by stage",
                       "datasets.D.dead_letter, dead_letter.count")
# The data card's distributions (publish/card_stats.py), counted while shards are written.
HIST_TOKENS = Counter("hist_tokens", ("side", "bin"), "examples by tokens per inputs/targets (fixed bins)",
                      "distributions.tokens_per_example")
HIST_FILL = Counter("hist_fill", ("side", "bin"), "rows by the non-pad share of a sequence (5 % bins)",
                    "distributions.row_fill")
SHARD_TOKENS = Counter("shard_tokens", ("shard", "side"), "non-pad tokens per output shard", "distributions.shards")
SHARD_ROWS = Counter("shard_rows", ("shard",), "rows per output shard", "distributions.shards")
# --cache (pipelines/cache): one count per source file, by what the cache did with it.
CACHE_HITS = Counter("cache_hit", ("dataset",), "source files whose tokenized examples were read from --cache",
                     "cache.hits, cache.datasets.D.hits")
CACHE_MISSES = Counter("cache_miss", ("dataset",), "source files read, rendered and tokenized with --cache on",
                       "cache.misses, cache.datasets.D.misses")
CACHE_CORRUPT = Counter("cache_corrupt", ("dataset",), "stored entries (of files or groups) that failed their checks (counted as misses too)",
                        "cache.corrupt")
CACHE_NOT_STORED = Counter("cache_not_stored", ("dataset",), "misses whose entry could not be stored (write failed, "
                           "source changed during the build)", "cache.not_stored")
CACHE_UNCACHEABLE = Counter("cache_uncacheable", ("dataset",), "source shards not served from --cache: no single file to key (hf, "
                            "tfds), or a file of a task with exemplar groups one of whose shards has none", "cache.uncacheable")
# ... one per task with exemplar groups (few-shot), by what its index did (its files count as hits or misses) ...
CACHE_TASK_HITS = Counter("cache_task_hit", ("dataset",), "tasks with exemplar groups replayed whole from their --cache index, "
                          "without reading their rows", "cache.task_hits, cache.datasets.D.task_hits")
CACHE_TASK_MISSES = Counter("cache_task_miss", ("dataset",), "tasks with exemplar groups read and grouped with --cache on "
                            "(their groups are then served or built one by one)", "cache.task_misses, cache.datasets.D.task_misses")
# ... and one per exemplar group of a task that missed.
CACHE_GROUP_HITS = Counter("cache_group_hit", ("dataset",), "exemplar groups (few-shot tasks) whose tokenized examples "
                           "were read from --cache", "cache.group_hits, cache.datasets.D.group_hits")
CACHE_GROUP_MISSES = Counter("cache_group_miss", ("dataset",), "exemplar groups rendered and tokenized with --cache on",
                             "cache.group_misses, cache.datasets.D.group_misses")
CACHE_COUNTERS = (CACHE_HITS, CACHE_MISSES, CACHE_CORRUPT, CACHE_NOT_STORED, CACHE_UNCACHEABLE, CACHE_TASK_HITS,
                  CACHE_TASK_MISSES, CACHE_GROUP_HITS, CACHE_GROUP_MISSES)

REPORT_COUNTERS = (READ, SAMPLED_OUT, UPSAMPLED_COPIES, EXEMPLAR_RENDER_FAILED, FEWSHOT_K, FEWSHOT_DROPPED,
                   FEWSHOT_FELL_BACK, FEWSHOT_NO_EXEMPLAR, FEWSHOT_STYLE, EXEMPLAR_REUSE, OPTION_FORMAT,
                   OPTION_MARKER_ANSWER, RENDERED_EXAMPLES, TRUNCATED, ROWS, INPUTS_NONPAD, TARGETS_NONPAD, LOSS_TOKENS, INPUTS_TOKENS,
                   TARGETS_TOKENS, EXAMPLES, TEMPLATE, SETTING, TASK_SETTING, DEAD_LETTERS, HIST_TOKENS, HIST_FILL,
                   SHARD_TOKENS, SHARD_ROWS, *CACHE_COUNTERS)


def total(counts: dict, counter: Counter) -> int:
    """The sum of a counter over all its keys."""
    return sum(v for k, v in counts.items() if k[0] == counter.name)


def by_part(counts: dict, counter: Counter) -> dict:
    """{part: count} of a counter that is per one thing."""
    return {k[1]: v for k, v in counts.items() if k[0] == counter.name}


def count_example(counts: _Tally, provenance: str, n: int = 1) -> str:
    """Count `n` written examples by their provenance `dataset|template_id|setting|row_id` (the same
    counters for every output format; only the first three fields are read); returns the dataset."""
    dataset, template_id, setting, _ = provenance.split("|", 3)
    counts[(EXAMPLES.name, dataset)] += n
    counts[(TEMPLATE.name, template_id)] += n
    counts[(SETTING.name, setting)] += n
    counts[(TASK_SETTING.name, dataset, setting)] += n
    return dataset


# --- progress metrics (Beam counters) -------------------------------------------------------------

@dataclass(frozen=True)
class Metric:
    name: str
    per_dataset: bool
    meaning: str

    def counter(self, dataset: str | None = None):
        """The Beam counter (per-dataset metrics need `dataset`)."""
        return Metrics.counter(NAMESPACE, f"{self.name}/{dataset}" if self.per_dataset else self.name)


READ_ROWS = Metric("read", True, "source rows read")
RENDERED = Metric("rendered", False, "examples rendered")
RENDERED_BY_DATASET = Metric("rendered", True, "examples rendered, per dataset")
PACKED_ROWS = Metric("packed_rows", False, "packed rows made")
WRITTEN_ROWS = Metric("written_rows", False, "output rows written")
WRITTEN = Metric("written", True, "examples written, per dataset")
SPILLED_RUNS = Metric("spilled_runs", False, "sorted run files spilled before Pack (local runner)")
VERIFIED_FILES = Metric("verified_files", False, "staged files verified before publishing")
SURVEYS_SERVED = Metric("cache_survey_hit", True, "source files whose survey was read from --cache (pipelines/cache/survey.py)")

PROGRESS_METRICS = (READ_ROWS, RENDERED, RENDERED_BY_DATASET, PACKED_ROWS, WRITTEN_ROWS, WRITTEN, SPILLED_RUNS,
                    VERIFIED_FILES)
STAGE_ORDER = tuple(dict.fromkeys(m.name for m in PROGRESS_METRICS if m.per_dataset))  # progress columns
