"""Flan chain-of-thought TSV files: `question<TAB>answer<TAB>rationale`, one example per line.

The files escape newlines inside a field as the two characters `\\n`; they are turned back into
newlines (set `unescape_newlines: false` to keep them). Row ids are `<split>:<line number>`.

Where the file is (`loader.args`): `path` (a file, glob or URL), or `file` (e.g. `gsm8k_train.tsv`)
looked up under `root`, else $FLANMIX_COT_ROOT (a local copy of FLAN's flan/v2/cot_data, or a
gs:// / s3:// copy), else the FLAN GitHub repository over https (`DEFAULT_ROOT`).
"""
from __future__ import annotations

import posixpath
from typing import Any, Iterator, Mapping

from pipelines.errors import LoaderError
from pipelines.loaders import files, records
from pipelines.loaders.base import RawRow, SourceShard

COLUMNS = ("question", "answer", "rationale")
DEFAULT_ROOT = "https://raw.githubusercontent.com/google-research/FLAN/main/flan/v2/cot_data"
ROOT_ENV = "FLANMIX_COT_ROOT"
HOW_TO_PROVIDE = (
    " To provide the full CoT data locally: `git clone https://github.com/google-research/FLAN` (run "
    "`git lfs pull` there: esnli_train.tsv and qed_train.tsv are Git LFS files) and set "
    f"${ROOT_ENV} (or loader.args.root) to its flan/v2/cot_data folder; a gs:// or s3:// copy works too."
)


def tsv_path(args: Mapping[str, Any]) -> str | None:
    """The file an entry reads: its `path`, or `<root>/<file>`."""
    return files.source_path(args, "file", "{}", ROOT_ENV, DEFAULT_ROOT)


def _data(shard: SourceShard) -> bytes:
    data = files.read_bytes(shard.args["path"])
    if data.startswith(b"version https://git-lfs"):  # a checkout without `git lfs pull`
        raise LoaderError(f"{shard.dataset}: {shard.args['path']} is a Git LFS pointer, not the data.{HOW_TO_PROVIDE}")
    return data


class CotTsvLoader:
    type_name = "cot_tsv"

    def plan(self, dataset: str, split: str, source_split: str, args: Mapping[str, Any]) -> list[SourceShard]:
        pattern = tsv_path(args)
        if not pattern:
            raise LoaderError(f"{dataset}: cot_tsv loader needs loader.args.path or loader.args.file")
        try:
            paths = files.expand(pattern, f"dataset {dataset} (cot_tsv)")
        except LoaderError as exc:
            raise LoaderError(files.with_hint(f"{exc}{HOW_TO_PROVIDE if args.get('file') else ''}", args)) from None
        return [
            SourceShard(dataset, split, self.type_name, {**args, "path": p}, i, size) for i, (p, size) in enumerate(paths)
        ]

    def offline_ready(self, args: Mapping[str, Any], source_split: str = "train") -> bool:
        path = tsv_path(args) or ""
        if not path or not files.is_local(path):
            return False
        try:
            return bool(files.expand(path, "probe"))
        except LoaderError:
            return False

    def count_rows(self, shard: SourceShard) -> int:
        """Rows `read` yields without an error, counted without building them (the survey's fast path)."""
        tabs = len(tuple(shard.args.get("columns", COLUMNS))) - 1
        return sum(1 for _, line, bad in records.lines(_data(shard))
                   if not bad and line.strip() and line.count("\t") == tabs)

    def read(self, shard: SourceShard) -> Iterator[RawRow]:
        """One row per non-empty line (split on `\\n` only, each line decoded alone: `records`)."""
        unescape = shard.args.get("unescape_newlines", True)
        columns = tuple(shard.args.get("columns", COLUMNS))
        name = posixpath.basename(shard.args["path"])
        prefix = f"{shard.split}:" if shard.index == 0 else f"{shard.split}:{shard.index}:"
        for line_no, line, undecodable in records.lines(_data(shard)):
            row_id = f"{prefix}{line_no}"
            if undecodable or not line.strip():
                yield RawRow(row_id, None, f"{name} line {line_no}: {undecodable or 'blank (whitespace only)'}", line)
                continue
            parts = line.split("\t")
            if len(parts) != len(columns):
                yield RawRow(row_id, None, f"{name} line {line_no}: expected {len(columns)} tab-separated columns "
                                           f"{list(columns)}, found {len(parts)}", line)
                continue
            if unescape:
                parts = [p.replace("\\n", "\n") for p in parts]
            yield RawRow(row_id, dict(zip(columns, (p.strip() for p in parts))))
