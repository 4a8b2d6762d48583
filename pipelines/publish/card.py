"""The data card: `README.md` beside `manifest.json`, in the Hugging Face dataset-card format, and its
plots under `card/`. Everything in it is read from the manifest, so a card can be (re)written for any
published corpus (`flanmix card DIR`) and its numbers are the manifest's.

    README.md                 YAML front matter (licence, languages, task categories, size category and a
                              `configs:` block naming the data shards, so `datasets.load_dataset(DIR)`
                              and the Hub load the corpus with no arguments), then tables and plots
    card/<plot>.png           `card_plots.PLOT_NAMES`

A build writes the card into its staging prefix right after the manifest is built; the card is
verified and moved with the shards, before `manifest.json` goes in place (`publish.commit`).
"""
from __future__ import annotations

import re
from collections import Counter, defaultdict

import yaml

from pipelines.formats import writers
from pipelines.formats.writers import WrittenFile
from pipelines.publish import card_plots

CARD_NAME = "README.md"
CARD_DIR = "card"
TOP_TASKS = 20

# Catalog licence text (first words, before any parenthesis) -> Hugging Face licence id.
_LICENSE_IDS = {
    "apache-2.0": "apache-2.0", "mit": "mit", "cc0": "cc0-1.0", "cc0-1.0": "cc0-1.0",
    "cc-by-4.0": "cc-by-4.0", "cc-by-3.0": "cc-by-3.0", "cc-by-sa-4.0": "cc-by-sa-4.0", "cc-by-sa-3.0": "cc-by-sa-3.0",
    "cc-by-nc-4.0": "cc-by-nc-4.0", "cc-by-nc-sa-4.0": "cc-by-nc-sa-4.0", "cc-by-nc-sa-3.0": "cc-by-nc-sa-3.0",
    "cc-by-nc-nd-4.0": "cc-by-nc-nd-4.0", "cc-by-nd-4.0": "cc-by-nd-4.0", "bsd-3-clause": "bsd-3-clause",
    "gpl-3.0": "gpl-3.0", "lgpl-3.0": "lgpl-3.0", "odc-by": "odc-by", "openrail": "openrail",
}

# Catalog language names -> ISO 639-1 (639-3 where there is none), the codes the Hub's `language` takes.
_LANGUAGE_CODES = {
    "Arabic": "ar", "Assamese": "as", "Bengali": "bn", "Bulgarian": "bg", "Burmese": "my", "Catalan": "ca",
    "Central Khmer": "km", "Chinese": "zh", "Croatian": "hr", "Czech": "cs", "Dutch": "nl", "English": "en",
    "Estonian": "et", "Filipino": "fil", "Finnish": "fi", "French": "fr", "Galician": "gl", "German": "de",
    "Greek": "el", "Gujarati": "gu", "Haitian": "ht", "Hebrew": "he", "Hindi": "hi", "Igbo": "ig",
    "Indonesian": "id", "Italian": "it", "Japanese": "ja", "Kannada": "kn", "Korean": "ko", "Kurdish": "ku",
    "Lao": "lo", "Lithuanian": "lt", "Malay": "ms", "Malayalam": "ml", "Marathi": "mr", "Nepali": "ne",
    "Norwegian": "no", "Oriya": "or", "Panjabi": "pa", "Persian": "fa", "Polish": "pl", "Portuguese": "pt",
    "Romanian": "ro", "Russian": "ru", "Sinhala": "si", "Slovak": "sk", "Somali": "so", "Spanish": "es",
    "Swahili": "sw", "Swedish": "sv", "Tagalog": "tl", "Tamil": "ta", "Telugu": "te", "Thai": "th",
    "Turkish": "tr", "Urdu": "ur", "Vietnamese": "vi", "Xhosa": "xh", "Yoruba": "yo", "Zhuang": "za",
}

# Catalog task categories that name a Hugging Face task category besides text2text-generation.
_TASK_CATEGORY_IDS = {
    "Translation": "translation", "Summarization": "summarization",
    "Question Answering": "question-answering", "Extractive QA": "question-answering",
    "Closed-Book QA": "question-answering", "Open-Domain QA": "question-answering",
    "Multiple-Choice QA (no trivia knowledge required)": "multiple-choice",
    "Sentiment Analysis": "text-classification", "Text Categorization": "text-classification",
    "Toxic Language Detection": "text-classification", "Textual Entailment": "text-classification",
    "Named Entity Recognition": "token-classification", "Program Execution": "text-generation",
    "Dialogue Generation": "text-generation", "Text Generation": "text-generation",
}

_SIZE_CATEGORIES = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                    (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B"))


def license_id(text: str) -> str:
    """A catalog licence ("Apache-2.0 (bigscience/P3)", "CC BY-SA 4.0") as a Hub licence id; "unknown"
    when empty, "other" when not recognised."""
    head = text.split("(", 1)[0].strip().lower()
    if not head:
        return "unknown"
    return _LICENSE_IDS.get(re.sub(r"[\s_]+", "-", head), "other")


def language_code(name: str) -> str | None:
    return _LANGUAGE_CODES.get(name.strip())


def size_category(rows: int) -> str:
    """The Hub's size bucket for the number of rows `load_dataset` returns."""
    for bound, label in _SIZE_CATEGORIES:
        if rows < bound:
            return label
    return "n>1B"


def data_kind(manifest: dict) -> str:
    """The directory `load_dataset` reads: parquet/ for packed corpora, jsonl/ for text exports."""
    return "jsonl" if manifest.get("format") == "jsonl" else "parquet"


def manifest_formats(manifest: dict) -> tuple[str, ...]:
    """The packed files a corpus holds: the manifest's `formats` (`--formats`), else both."""
    return tuple(manifest.get("formats") or ("tfrecord", "parquet"))


def data_files(manifest: dict) -> list[str]:
    kind = data_kind(manifest)
    return sorted(f["path"] for f in manifest["files"] if f["path"].startswith(kind + "/"))


def task_categories(manifest: dict) -> list[str]:
    """Hub task category ids: text2text-generation (text-generation for decoder rows) and the ones the
    datasets' own categories name."""
    first = "text-generation" if manifest.get("layout") == "decoder" else "text2text-generation"
    found = {_TASK_CATEGORY_IDS[c] for d in manifest["datasets"].values() for c in d.get("task_categories", ())
             if c in _TASK_CATEGORY_IDS}
    return [first] + sorted(found - {first})


def front_matter(manifest: dict) -> dict:
    licenses = sorted({license_id(d.get("license", "")) for d in manifest["datasets"].values()}) or ["unknown"]
    names = sorted({lang for d in manifest["datasets"].values() for lang in d.get("languages", ())})
    codes = sorted({c for c in map(language_code, names) if c})
    meta = {
        "pretty_name": f"flanmix {manifest['mixture']}",
        "license": licenses[0] if len(licenses) == 1 else licenses,
        "language": codes,
        "multilinguality": "multilingual" if len(codes) > 1 else "monolingual",
        "task_categories": task_categories(manifest),
        "size_categories": [size_category(int(manifest["num_rows"]))],
        "tags": ["flanmix", "instruction-tuning", "flan",
                 "rendered-text" if manifest.get("format") == "jsonl" else f"packed-{manifest.get('layout', 'encdec')}"],
    }
    if data_files(manifest):  # a `--formats tfrecord` corpus has nothing `load_dataset` reads
        meta["configs"] = [{"config_name": "default", "default": True,
                            "data_files": [{"split": manifest["split"], "path": data_files(manifest)}]}]
    if "other" in licenses or "unknown" in licenses:
        meta["license_details"] = "see the Sources and licences table: each source's own licence applies"
    return meta


# --- body ------------------------------------------------------------------------------------------

def _cell(value) -> str:
    text = str(value)
    return text.replace("|", "\\|").replace("\n", " ").strip()


def _table(header: tuple[str, ...], rows) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]
    out += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return out


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def rebuild_command(manifest: dict) -> str:
    """The `flanmix build` that makes this corpus again (with the same catalog, templates and mixture
    file, whose hashes the manifest keeps under `provenance`)."""
    parts = ["flanmix build", f"--mixture {manifest['mixture']}", "--output DIR", f"--seed {manifest['seed']}",
             f"--num_shards {manifest['num_shards']}"]
    layout = manifest.get("layout", "encdec")
    lengths = manifest.get("sequence_length") or {}
    if manifest.get("format") == "jsonl":
        parts.append("--format jsonl")
    elif layout == "decoder":
        parts += ["--layout decoder", f"--decoder_length {lengths['targets']}"]
    else:
        parts += [f"--inputs_length {lengths['inputs']}", f"--targets_length {lengths['targets']}"]
    if manifest.get("formats"):
        parts.append(f"--formats {','.join(manifest['formats'])}")
    parts.append(f"--overlong {manifest['overlong_policy']}")
    mixing = manifest.get("mixing") or {}
    if mixing.get("target_tokens"):
        parts.append(f"--target_tokens {mixing['target_tokens']}")
    vocab = manifest["vocabulary"]["path"]
    if not vocab.endswith("pipelines/assets/flanmix_demo_sp8k.model"):
        parts.append(f"--vocab {vocab}")
    return " \\\n    ".join(parts)


def _dead_letters(manifest: dict) -> tuple[Counter, list]:
    by_stage: Counter = Counter()
    rows = []
    for name, d in sorted(manifest["datasets"].items()):
        for stage, n in sorted(d["dead_letter"].items()):
            by_stage[stage] += n
            rows.append((name, stage, n))
    return by_stage, rows


STAGE_REASONS = {
    "read": "the source row could not be parsed",
    "render": "a declared field is missing, None or mistyped, or the template failed to render",
    "tokenize": "longer than the sequence lengths with --overlong drop",
}


def render_card(manifest: dict, plots: list[card_plots.PlotData]) -> str:
    """The README.md text for a manifest and the plots drawn for it."""
    m = manifest
    mixing = m.get("mixing") or {}
    datasets = m["datasets"]
    total_examples = int(m["num_examples"]) or 1
    tokens = sum(d["inputs_tokens"] + d["targets_tokens"] for d in datasets.values())
    layout = m.get("layout", "encdec")
    lengths = m.get("sequence_length") or {}
    files = data_files(m)
    plot_files = {p.name: p.file for p in plots}
    kind = data_kind(m)
    lines = ["---", yaml.safe_dump(front_matter(m), sort_keys=False, allow_unicode=True, width=1000).rstrip(), "---", ""]
    lines += [f"# flanmix corpus `{m['mixture']}` ({m['split']})", ""]
    what = ("rendered prompts, one example per line (unpacked, untokenized)" if m.get("format") == "jsonl" else
            f"packed rows, layout `{layout}` ({', '.join(f'{k} {v}' for k, v in lengths.items())} tokens)")
    lines += [
        f"An instruction-tuning corpus in the style of the Flan Collection, built by flanmix "
        f"{m['flanmix_version']} from mixture `{m['mixture']}` with seed {m['seed']}: {m['num_rows']:,} "
        f"{'examples' if m.get('format') == 'jsonl' else 'rows'} holding {m['num_examples']:,} examples "
        f"({tokens:,} tokens) from {len(datasets)} tasks, as {what}, in {m['num_shards']} shard(s).",
        "",
        "## What was built",
        "",
        *_table(("", ""), [
            ("mixture", m["mixture"]), ("split", m["split"]), ("seed", m["seed"]),
            ("format / layout", f"{m.get('format', 'packed')} / {layout}"),
            ("sequence lengths", ", ".join(f"{k} {v}" for k, v in lengths.items()) or "none (nothing is cut)"),
            ("rows", f"{m['num_rows']:,}"), ("examples", f"{m['num_examples']:,}"), ("tokens (inputs + targets)", f"{tokens:,}"),
            ("shards", m["num_shards"]), ("overlong policy", m["overlong_policy"]),
            ("vocabulary", f"{m['vocabulary']['path'].rsplit('/', 1)[-1]} ({m['vocabulary']['vocab_size']:,} pieces, "
                           f"sha256 {m['vocabulary']['sha256'][:16]}...; pad {m['vocabulary']['pad_id']}, EOS {m['vocabulary']['eos_id']}; "
                           f"whitespace {m['vocabulary'].get('whitespace', 'collapsed')})"),
            ("row layout", m.get("feature_spec", "")),
        ]),
        "",
        "Rebuild it (same catalog, templates and mixture file; their SHA-256 are in `manifest.json` under `provenance`):",
        "",
        "```",
        rebuild_command(m),
        "```",
        "",
        "## Loading",
        "",
        "```python",
        "import datasets",
        f"ds = datasets.load_dataset(\"DIR\")[\"{m['split']}\"]   # the {kind}/ shards named in the front matter",
        "```",
        "",
        ("The same rows are in `tfrecord/` (tf.train.Example) for packed corpora. "
         if not m.get("formats") else
         f"This corpus was built with `--formats {','.join(manifest_formats(m))}`: only those files were written. ")
        + "`flanmix inspect DIR --row N` "
        "decodes a packed row back to text, segment by segment, with each segment's dataset, template, prompt "
        "setting and row id (`provenance`).",
        "",
    ]
    if mixing:
        cols = mixing["collections"]
        lines += ["## Collections: target vs realized share", ""]
        lines += _table(("collection", "examples", "target share", "realized share"),
                        [(c, f"{v['examples']:,}", _pct(v["target_share"]), _pct(v["realized_share"])) for c, v in cols.items()])
        lines += [""]
        if "collection_shares" in plot_files:
            lines += [f"![target vs realized share per collection]({plot_files['collection_shares']})", ""]
        lines += [f"Target {mixing['target_examples']:,} examples"
                  + (f", {mixing['target_tokens']:,} tokens" if mixing.get("target_tokens") else "")
                  + f"; realized {m['num_examples']:,} examples, {mixing['realized_tokens']:,} tokens. "
                  f"Downsampled {mixing['downsampled']:,}, upsampled copies {mixing['upsampled']:,}.", ""]
    top = card_plots.tasks_by_size(m)[:TOP_TASKS]
    lines += [f"## The {len(top)} largest tasks (of {len(datasets)})", ""]
    lines += _table(("task", "collection", "examples", "share", "target share", "tokens", "truncated", "dead letters"), [
        (n, datasets[n]["collection"], f"{e:,}", _pct(e / total_examples),
         _pct(datasets[n]["target_share"]) if "target_share" in datasets[n] else "",
         f"{datasets[n]['inputs_tokens'] + datasets[n]['targets_tokens']:,}", f"{datasets[n]['truncated']:,}",
         f"{sum(datasets[n]['dead_letter'].values()):,}") for n, e in top])
    lines += [""]
    if "examples_per_task" in plot_files:
        lines += [f"![examples per task]({plot_files['examples_per_task']})", ""]
    if mixing:
        lines += ["## Prompt settings", ""]
        lines += _table(("setting", "examples", "target share", "realized share"),
                        [(s, f"{v['examples']:,}", _pct(v["target_share"]), _pct(v["realized_share"]))
                         for s, v in mixing["prompt_settings"].items()])
        few = mixing["few_shot"]
        reuse = few.get("exemplar_reuse") or {}
        source = (f"from each task's whole split (groups of about {few.get('group_size')} rows; each row offered as "
                  f"an exemplar at most {reuse.get('max', 0)} times, {reuse.get('mean', 0)} on average)"
                  if str(few.get("exemplar_source", "")).startswith("whole split")
                  else f"from a pool of {few['config']['pool_size']} per task")
        lines += ["", f"Few-shot prompts hold {few['config']['min_exemplars']}-{few['config']['max_exemplars']} exemplars "
                  f"{source}; exemplars per prompt: "
                  + (", ".join(f"{k}: {v:,}" for k, v in few["exemplars_per_prompt"].items())
                     or ("not counted (a text export keeps every exemplar)" if m.get("format") == "jsonl" else "none"))
                  + f". Exemplars dropped to fit the inputs length: {few['exemplars_dropped_for_length']:,}; prompts that "
                  f"fell back to zero-shot: {few['fell_back_to_zero_shot']:,}; exemplars that could not be rendered: "
                  f"{few['exemplars_not_renderable']:,}.", ""]
        if "exemplars_per_prompt" in plot_files:
            lines += [f"![few-shot exemplars per prompt]({plot_files['exemplars_per_prompt']})", ""]
    eff = m.get("packing_efficiency")
    if eff is not None:
        lines += ["## Lengths and packing", ""]
        lines += ["Packing efficiency (non-pad tokens / slots): "
                  + ", ".join(f"{k} {_pct(v)}" for k, v in eff.items())
                  + f". Examples truncated to fit: {sum(d['truncated'] for d in datasets.values()):,}.", ""]
        for name, alt in (("example_lengths", "tokens per example against the packing lengths"),
                          ("packing_per_shard", "packing efficiency per shard"), ("tokens_per_row", "tokens per row")):
            if name in plot_files:
                lines += [f"![{alt}]({plot_files[name]})", ""]
    by_stage, dead_rows = _dead_letters(m)
    lines += ["## Drops and dead letters", ""]
    lines += [f"{m['dead_letter']['count']:,} rows went to `dead_letter/` (each with its dataset, row id and reason)."
              + (f" Sampled out by the mixture: {mixing['downsampled']:,}." if mixing else ""), ""]
    if by_stage:
        lines += _table(("stage", "rows", "reason"), [(s, f"{n:,}", STAGE_REASONS.get(s, "")) for s, n in sorted(by_stage.items())])
        lines += ["", *_table(("task", "stage", "rows"), [(n, s, f"{c:,}") for n, s, c in dead_rows]), ""]
    skipped = mixing.get("skipped_sources") or []
    lines += ["## Skipped sources", ""]
    if skipped:
        lines += _table(("dataset", "reason"), [(s["dataset"], s["reason"].splitlines()[0]) for s in skipped])
    else:
        lines += ["None: every source of the mixture was read."]
    lines += ["", "## Sources and licences", ""]
    by_license: dict = defaultdict(int)
    for d in datasets.values():
        by_license[d.get("license") or "unknown"] += d["examples"]
    lines += _table(("licence", "Hub id", "examples"),
                    [(lic, license_id(lic), f"{n:,}") for lic, n in sorted(by_license.items())])
    lines += ["", "Every source, with its own licence (which applies to its examples):", ""]
    lines += _table(("task", "collection", "licence", "languages", "examples"),
                    [(n, d["collection"], d.get("license") or "unknown", ", ".join(d.get("languages", ())), f"{d['examples']:,}")
                     for n, d in sorted(datasets.items())])
    lines += ["", "## Files", "", f"{len(files)} {kind} shard(s) listed in the front matter; every data file "
              f"with its row count, size and SHA-256 is in `manifest.json` (`files`).", ""]
    return "\n".join(lines).rstrip() + "\n"


def card_files(manifest: dict) -> list[tuple[str, bytes]]:
    """(relative path, bytes) of the card: the plots, then README.md."""
    plots = card_plots.plot_data(manifest)
    out = list(zip((p.file for p in plots), card_plots.render_all(plots)))
    out.append((CARD_NAME, render_card(manifest, plots).encode("utf-8")))
    return out


def write_card(manifest: dict, directory: str) -> list[WrittenFile]:
    """Write the card under `directory` (local, gs:// or s3://), README.md last."""
    return [writers.write_file(directory, path, data, 0) for path, data in card_files(manifest)]


def stage_card(manifest: dict, staging: str, verify) -> tuple[WrittenFile, ...]:
    """The build's card: written into the staging prefix and re-read by `verify(staging, file)` like
    every shard (publish.verify_file), so it is moved into place with them, before the manifest."""
    written = write_card(manifest, staging)
    for f in written:
        verify(staging, f)
    return tuple(written)


def restore_card(written, staging: str, output_dir: str) -> None:
    """A corpus already complete with the same manifest (the same build run again, or a retried
    commit): put back any card file it lacks (one published before cards existed, or deleted)."""
    from apache_beam.io.filesystems import FileSystems

    missing = [f.path for f in written if not FileSystems.exists(FileSystems.join(output_dir, f.path))]
    if missing:
        for path in missing:
            with FileSystems.create(FileSystems.join(output_dir, path)) as handle, \
                    FileSystems.open(FileSystems.join(staging, path)) as source:
                handle.write(source.read())


def stale_plots(written) -> list[str]:
    """card/<plot>.png names this card does not have (an earlier corpus's, to remove on overwrite)."""
    have = {f.path for f in written}
    return [f"{CARD_DIR}/{name}.png" for name in card_plots.PLOT_NAMES if f"{CARD_DIR}/{name}.png" not in have]
