"""Write the mechanical catalog entries from the facts in task_catalog/tools/facts/.

    .venv/bin/python task_catalog/tools/generate_entries.py --niv2-metadata PATH/niv2_task_metadata.json

Writes task_catalog/datasets/{niv2,t0,cot}/<name>.yaml: one entry per NIV2 task file (1,556), per P3
prompt of T0-SF (193) and per Flan CoT set (9). The output depends only on the inputs (sorted
iteration, fixed YAML formatting), so re-running on the same facts reproduces the files byte for
byte. Flan 2021, Dialog and Program-synthesis entries need per-dataset field mappings and are
written by hand (datasets/flan2021, dialog, program_synthesis); tests/test_catalog_full.py checks
every entry against the facts.

Inputs: facts/flan_collection_info.csv (google-research/FLAN, Apache-2.0: source, dataset, task,
category and languages per task), facts/t0_prompt_types.csv (FLAN's task_type per P3 prompt, from
constants_t0.T0_TRAIN_TASK_METADATA), the NIV2 task metadata (definition and one positive example per task, exported
from FLAN's constants_niv2.py; used for fixture rows of tasks whose file is not shipped), and the
shipped samples in task_catalog/data/.
"""
from __future__ import annotations

import argparse
import ast
import csv
import json
from collections import defaultdict
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]  # task_catalog/
FACTS = ROOT / "tools" / "facts"
HEADER = "# flanmix catalog entry (schemas/catalog_entry.schema.json), written by task_catalog/tools/generate_entries.py\n"
NIV2_FIELDS = {"definition": "string", "positive_examples": "list[object]", "input": "string", "output": "string", "outputs": "list[string]"}
COT_INVERSIONS = ["Question Generation", "Explanation Generation", "Generate Question and Answer from Explanation"]
# flan_collection_info.csv name -> (FLAN's task name in task_configs.py, TSV stem in flan/v2/cot_data).
# FLAN names a set `stream_` only for aqua and qed (lower-quality "stream" annotations); the CSV
# calls seven of them stream_*, so the entry keeps the CSV's name as its source_dataset.
COT_SETS = {
    "cot_gsm8k": ("cot_gsm8k", "gsm8k"), "cot_strategyqa": ("cot_strategyqa", "strategyqa"),
    "stream_aqua": ("stream_aqua", "aqua"), "stream_creak": ("cot_creak", "creak"),
    "stream_ecqa": ("cot_ecqa", "ecqa"), "stream_esnli": ("cot_esnli", "esnli"),
    "stream_qasc": ("cot_qasc", "qasc"), "stream_qed": ("stream_qed", "qed"),
    "stream_sensemaking": ("cot_sensemaking", "sensemaking"),
}
# CoT sets whose TSV is not shipped (the local FLAN mirror lacks them): one invented row each.
COT_FIXTURES = {
    "cot_esnli": {
        "question": "Premise: \"Two children are building a sandcastle on a beach.\"\nHypothesis: \"Kids are playing outdoors.\"\nIs the hypothesis entailed by the premise?\nOptions:\n- yes\n- it is not possible to tell\n- no",
        "answer": "yes",
        "rationale": "Building a sandcastle on a beach is a way of playing, and a beach is outdoors.",
    },
    "stream_qed": {
        "question": "Passage: The Harbour Bridge opened in 1932 and links the city centre with the north shore.\n\nQuestion: when did the harbour bridge open?",
        "answer": "1932",
        "rationale": "The passage says the bridge opened in 1932.",
    },
}
# T0 (P3) fixture rows, written for flanmix, one per generic category: (prompted input, target, choices).
T0_FIXTURES = {
    "Multiple-Choice QA (no trivia knowledge required)": (
        "Maya left her wet umbrella open by the door before going to bed. Why did she leave it open?",
        "so that it would dry", ["so that it would dry", "because it was broken", "to keep the door shut"]),
    "Extractive QA": (
        "The bakery on Elm Street opens at seven and sells rye bread only on Tuesdays. On which day can you buy rye bread there?",
        "Tuesdays", ["Tuesdays", "Mondays", "every day"]),
    "Closed-Book QA": ("What is the largest planet in the solar system?", "Jupiter", ["Jupiter", "Mars", "Venus"]),
    "Adversarial QA": (
        "The museum moved its fossil collection to the east wing in 1998, two years after the fire. In what year was the fire?",
        "1996", ["1996", "1998", "2000"]),
    "Sentiment Analysis": (
        "Review: The kettle stopped working after two days and nobody answered my emails. Is this review positive or negative?",
        "negative", ["negative", "positive"]),
    "Question Generation": (
        "Write a question about this text whose answer is \"eleven\": The river flows north through eleven countries.",
        "How many countries does the river flow through?", ["How many countries does the river flow through?", "Where does the river start?"]),
    "Structured Data to Text": (
        "Facts: name = Ada Quill | occupation = botanist | born = 1902. Write one sentence about this person.",
        "Ada Quill was a botanist born in 1902.", ["Ada Quill was a botanist born in 1902.", "Ada Quill was a painter."]),
    "Topic Classification": (
        "Harbor Ferries Ltd. is a regional ferry operator founded in 1952. Which category does this text belong to: company, artist or village?",
        "company", ["company", "artist", "village"]),
    "Dialog Turn Prediction": (
        "A: Did you bring the tickets? B: They are in my bag. A: Great, when does the film start? What does B say next?",
        "It starts at eight.", ["It starts at eight.", "I like apples."]),
    "Title Generation": (
        "Suggest a title for this plot: a lighthouse keeper befriends a lost whale and helps it find its pod.",
        "The Keeper and the Whale", ["The Keeper and the Whale", "City Lights"]),
    "Span Generation": (
        "Article: The town library now lends tools such as drills and ladders. Question: What can people borrow besides books? Answer with a span from the article.",
        "tools such as drills and ladders", ["tools such as drills and ladders", "bicycles"]),
    "Context Generation": (
        "Write a short app review that gives the app four stars.",
        "Handy and fast; I only wish it had a dark mode.", ["Handy and fast; I only wish it had a dark mode.", "It crashes constantly."]),
    "Explanation Generation": (
        "Question: Where would you keep milk cold? Answer: a refrigerator. Explain why the answer is right.",
        "A refrigerator is the appliance used to keep food such as milk cold.", ["A refrigerator is the appliance used to keep food such as milk cold."]),
}
P3_HINT = ("bigscience/P3 is a large Hub dataset; on a machine with internet access export the config with "
           "datasets (save_to_disk or to_parquet) and set loader.args.path, or point HF_HOME at a populated cache.")


def read_csv(name: str) -> list[dict]:
    with open(FACTS / name, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def languages(text: str) -> list[str]:
    text = text.strip()
    return list(ast.literal_eval(text)) if text.startswith("[") else [p.strip() for p in text.split(";") if p.strip()]


class _Dumper(yaml.SafeDumper):
    """Writes a long string used twice in one entry once, as a YAML anchor + alias (NIV2 fixture
    rows whose query is the task's positive example)."""

    def ignore_aliases(self, data):
        return not (isinstance(data, str) and len(data) > 80) and super().ignore_aliases(data)


def dump(path: Path, entry: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    body = yaml.dump(entry, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=1_000_000, default_flow_style=None)
    path.write_text(HEADER + body, encoding="utf-8")


def niv2_fixture(task: str, metadata: dict, shipped: Path | None) -> dict:
    """A real row: the first shipped instance, else the task's positive example as the query."""
    if shipped is not None:
        data = json.loads(shipped.read_text(encoding="utf-8"))
        inst = data["Instances"][0]
        outputs = inst["output"] if isinstance(inst["output"], list) else [inst["output"]]
        definition = data["Definition"][0] if isinstance(data["Definition"], list) and len(data["Definition"]) == 1 else data["Definition"]
        positives = [{"input": e.get("input"), "output": e.get("output"), "explanation": e.get("explanation", "")}
                     for e in data.get("Positive Examples", [])]
        return {"row_id": str(inst.get("id") or f"{task}-0"), "source": f"first instance of the shipped file data/niv2/{task}.json",
                "fields": {"definition": definition, "positive_examples": positives, "input": inst["input"],
                           "output": outputs[0], "outputs": outputs}}
    meta = metadata[task]
    ex = meta["positive_examples"]
    example = {"input": ex["input"], "output": ex["output"], "explanation": ex.get("explanation", "")}
    return {"row_id": f"{task}-positive-example", "source": "Definition + positive example (FLAN constants_niv2) as the query",
            "fields": {"definition": meta["definition"], "positive_examples": [example], "input": ex["input"],
                       "output": ex["output"], "outputs": [ex["output"]]}}


def niv2_entries(info: list[dict], metadata: dict, out: Path) -> int:
    rows = sorted((r for r in info if r["Source"] == "NIv2"), key=lambda r: r["Specific Task Category"])
    for r in rows:
        task, source = r["Specific Task Category"], r["Dataset"]
        shipped = ROOT / "data" / "niv2" / f"{task}.json"
        shipped = shipped if shipped.exists() else None
        entry = {
            "schema_version": 1, "name": task, "source_dataset": source,
            "description": f"Super-NaturalInstructions task {task} (source dataset: {source}"
                           + ("; a sample of its first instances ships in data/niv2 for the demo)." if shipped else ")."),
            "collections": ["niv2"], "info_source": "NIv2",
            "task_categories": [r["Generic Task Category"]], "languages": languages(r["Languages"]),
            "license": "Apache-2.0 (allenai/natural-instructions)", "default_cap": 5000,
            "loader": {"type": "niv2_json", "args": {"task": task}},
            **({"sample_loader": {"type": "niv2_json", "args": {"path": f"../../data/niv2/{task}.json"}}} if shipped else {}),
            "splits": {"train": "train"}, "fields": dict(NIV2_FIELDS), "templates": ["niv2_definition"],
            "fixtures": [niv2_fixture(task, metadata, shipped)],
        }
        dump(out / "niv2" / f"{task}.yaml", entry)
    return len(rows)


def t0_entries(info: list[dict], types: dict[str, str], out: Path) -> int:
    """One entry per P3 prompt. FLAN's task_type per prompt (facts/t0_prompt_types.csv, from
    constants_t0.T0_TRAIN_TASK_METADATA) decides how answer choices appear in the options settings:
    `t0_multiple_choice` prompts already list their choices in the P3 text, so their options templates
    present the prompt as it is (the choices once, and the target checked against them);
    `t0_multiple_choice_separated_options` prompts carry the choices only in `answer_choices`, so
    their options templates add them; `t0_question_answer` prompts have no choices."""
    rows = sorted((r for r in info if r["Source"] == "T0"), key=lambda r: r["Specific Task Category"])
    for r in rows:
        prompt, source, category = r["Specific Task Category"], r["Dataset"], r["Generic Task Category"]
        kind = types[prompt]
        fields = {"inputs_pretokenized": "string", "targets_pretokenized": "string"}
        tvars = {"question": "inputs_pretokenized | replace('\\n', ' ') | trim",
                 "answer": "targets_pretokenized | replace('\\n', '') | trim"}
        text, target, choices = T0_FIXTURES[category]
        if kind == "t0_multiple_choice":  # P3's own wording already shows the choices
            text = text + "\nChoices:\n" + "\n".join(f"- {c}" for c in choices)
        fixture = {"inputs_pretokenized": text, "targets_pretokenized": target}
        templates, notes = ["t0_prompted"], "This prompt has no answer choices, so only no-options framings apply."
        if kind != "t0_question_answer":
            fields["answer_choices"] = "list[string]"
            tvars["options"] = "answer_choices | map('replace', '\\n', '') | map('trim') | list"
            fixture["answer_choices"] = list(choices)
            if kind == "t0_multiple_choice":
                templates = ["t0_prompted", "t0_prompted_inline_options"]
                notes = ("The P3 prompt already lists its answer choices, so the options templates (t0_prompted_inline_options) "
                         "show the prompt as it is, with the choices once, as FLAN does.")
            else:
                templates = ["t0_prompted", "t0_prompted_options"]
                notes = ("The P3 prompt carries its answer choices only in answer_choices, so the options templates "
                         "(t0_prompted_options) list them after the prompt.")
        entry = {
            "schema_version": 1, "name": prompt.lower(), "source_dataset": source,
            "description": f"T0-SF: P3 prompt {prompt} (dataset {source}); each P3 prompt is its own task.",
            "collections": ["t0"], "info_source": "T0", "task_categories": [category],
            "languages": languages(r["Languages"]), "license": "Apache-2.0 (bigscience/P3)", "default_cap": 20000,
            "loader": {"type": "hf_datasets", "args": {"dataset": "bigscience/P3", "name": prompt, "hint": P3_HINT}},
            "splits": {"train": "train"}, "fields": fields, "template_vars": tvars, "templates": templates,
            "notes": f"FLAN task type {kind}. Inputs are the P3 prompt with newlines flattened to spaces, as FLAN does. " + notes,
            "fixtures": [{"row_id": "fixture:0", "source": "written for flanmix (P3 rows are not shipped)", "fields": fixture}],
        }
        dump(out / "t0" / f"{prompt.lower()}.yaml", entry)
    return len(rows)


def cot_entries(info: list[dict], out: Path) -> int:
    by_dataset: dict[str, list[dict]] = defaultdict(list)
    for r in info:
        if r["Source"] == "CoT":
            by_dataset[r["Dataset"]].append(r)
    for info_name in sorted(by_dataset):
        rows, (name, stem) = by_dataset[info_name], COT_SETS[info_name]
        shipped = ROOT / "data" / "cot" / f"{stem}_train.tsv"
        sample = {}
        if shipped.exists():
            first = shipped.read_text(encoding="utf-8").splitlines()[0].split("\t")
            q, a, rat = (p.replace("\\n", "\n").strip() for p in first)
            fixture = {"row_id": "train:1", "source": f"first line of flan/v2/cot_data/{stem}_train.tsv (shipped sample data/cot/{stem}_train.tsv)",
                       "fields": {"question": q, "answer": a, "rationale": rat}}
            sample = {"sample_loader": {"type": "cot_tsv", "args": {"path": f"../../data/cot/{stem}_train.tsv"}}}
            description = (f"Flan chain-of-thought data for {stem}: question, answer and a human-written rationale "
                           f"(flan/v2/cot_data/{stem}_train.tsv; its first 300 rows ship in data/cot for the demo).")
        else:
            fixture = {"row_id": "fixture:0", "source": "written for flanmix in the style of the set (its TSV is not shipped)",
                       "fields": dict(COT_FIXTURES[name])}
            description = (f"Flan chain-of-thought data for {stem}: question, answer and rationale "
                           f"(flan/v2/cot_data/{stem}_train.tsv; no sample ships).")
        loader = {"file": f"{stem}_train.tsv",
                  "hint": f"FLAN keeps this set at flan/v2/cot_data/{stem}_train.tsv in google-research/FLAN."}
        # Every forward template's target carries the rationale and the answer; its prompt shows the question.
        fixture["expect"] = {"target": fixture["fields"]["answer"], "rationale": fixture["fields"]["rationale"],
                             "inputs_contain": [fixture["fields"]["question"]]}
        categories = [r["Generic Task Category"] for r in rows]
        entry = {
            "schema_version": 1, "name": name, **({"source_dataset": info_name} if info_name != name else {}),
            "description": description, "collections": ["cot"], "info_source": "CoT",
            "task_categories": categories, "inversion_categories": [c for c in categories if c in COT_INVERSIONS],
            "languages": languages(rows[0]["Languages"]), "license": "Apache-2.0 (Flan Collection CoT release)",
            "default_cap": 100000, "loader": {"type": "cot_tsv", "args": loader}, **sample, "splits": {"train": "train"},
            "fields": {"question": "string", "answer": "string", "rationale": "string"},
            "templates": [name], "fixtures": [fixture],
        }
        dump(out / "cot" / f"{name}.yaml", entry)
    return len(by_dataset)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--niv2-metadata", required=True, help="niv2_task_metadata.json (task -> definition, positive_examples)")
    parser.add_argument("--out", default=str(ROOT / "datasets"), help="catalog datasets directory")
    args = parser.parse_args()
    info = read_csv("flan_collection_info.csv")
    types = {r["prompt"]: r["task_type"] for r in read_csv("t0_prompt_types.csv")}
    metadata = json.loads(Path(args.niv2_metadata).read_text(encoding="utf-8"))
    out = Path(args.out)
    counts = {"niv2": niv2_entries(info, metadata, out), "t0": t0_entries(info, types, out), "cot": cot_entries(info, out)}
    print("wrote " + ", ".join(f"{n} {k}" for k, n in counts.items()) + f" entries under {out}")


if __name__ == "__main__":
    main()
