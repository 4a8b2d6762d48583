"""`flanmix sources verify` and `flanmix sources diff`.

verify re-reads every file sources.json lists: size, SHA-256 and the Parquet row count must be those
recorded; each problem names the file. diff compares two snapshots source by source: a source whose
key and file hashes are equal is unchanged without reading a row; otherwise both copies are read and
compared by row id (rows added / removed / changed per split) and by field (fields that appear,
disappear, or change value in rows present in both).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from pipelines.formats.writers import WrittenFile
from pipelines.publish.staging import PublishError
from pipelines.publish.verify import verify_file
from pipelines.sources import encoding
from pipelines.sources.manifest import Snapshot, join, load, read_bytes


def verify_snapshot(root: str) -> tuple[Snapshot, list[str]]:
    """(the snapshot, one line per problem; empty when every file is intact)."""
    snapshot = load(root)
    problems = []
    for name, source in sorted(snapshot.sources.items()):
        for s in source.get("shards", []):
            try:
                verify_file(snapshot.root, WrittenFile(s["path"], s["num_rows"], s["num_bytes"], s["sha256"]))
            except PublishError as exc:
                problems.append(f"{name}: {str(exc).replace('staged file ', 'snapshot file ', 1).replace('the writer reported', 'sources.json records')}")
    return snapshot, problems


def _rows(snapshot: Snapshot, source: dict) -> dict:
    """row id -> RawRow of one source, every file hash-checked."""
    out = {}
    for s in source.get("shards", []):
        path = join(snapshot.root, s["path"])
        data = read_bytes(path)
        if hashlib.sha256(data).hexdigest() != s["sha256"]:
            raise PublishError(f"snapshot file {path}: its sha256 is not the one sources.json records (run sources verify)")
        out.update((r.row_id, r) for r in encoding.decode_table(encoding.from_parquet_bytes(data)))
    return out


@dataclass
class SourceDiff:
    dataset: str
    status: str  # added | removed | unchanged | changed | failed (in both: not a difference)

    @property
    def differs(self) -> bool:
        return self.status not in ("unchanged", "failed")
    detail: list[str] = field(default_factory=list)


def diff_snapshots(a_root: str, b_root: str) -> list[SourceDiff]:
    a, b = load(a_root), load(b_root)
    out = []
    for name in sorted(set(a.sources) | set(b.sources)):
        sa, sb = a.sources.get(name), b.sources.get(name)
        if sa is None or sb is None:
            present = sb if sa is None else sa
            rows = ", ".join(f"{k} {v} rows" for k, v in sorted(present.get("rows", {}).items()))
            out.append(SourceDiff(name, "added" if sa is None else "removed", [rows] if rows else []))
            continue
        if "ok" not in (sa.get("status"), sb.get("status")):
            out.append(SourceDiff(name, "failed", ["not fetched in either snapshot"]))
            continue
        if sa.get("status") != sb.get("status"):
            which = "A" if sa.get("status") != "ok" else "B"
            reason = (sa if which == "A" else sb).get("reason", "")
            out.append(SourceDiff(name, "changed", [f"not fetched in {which}: {reason.splitlines()[0] if reason else ''}"]))
            continue
        if [s["sha256"] for s in sa["shards"]] == [s["sha256"] for s in sb["shards"]]:
            out.append(SourceDiff(name, "unchanged"))
            continue
        detail = []
        for key in ("loader", "source_split"):
            if sa.get(key) != sb.get(key):
                detail.append(f"{key}: {sa.get(key)!r} -> {sb.get(key)!r}")
        ra, rb = _rows(a, sa), _rows(b, sb)
        split = sb.get("split") or sa.get("split")
        added, removed = sorted(set(rb) - set(ra)), sorted(set(ra) - set(rb))
        common = [k for k in ra if k in rb]
        changed = [k for k in common if ra[k] != rb[k]]
        detail.append(f"{split}: {len(ra)} -> {len(rb)} rows, {len(added)} added, {len(removed)} removed, {len(changed)} changed")
        names_a = {f for r in ra.values() if r.fields for f in r.fields}
        names_b = {f for r in rb.values() if r.fields for f in r.fields}
        if names_b - names_a:
            detail.append(f"fields added: {', '.join(sorted(map(str, names_b - names_a)))}")
        if names_a - names_b:
            detail.append(f"fields removed: {', '.join(sorted(map(str, names_a - names_b)))}")
        per_field: dict[str, int] = {}
        for k in changed:
            fa, fb = ra[k].fields or {}, rb[k].fields or {}
            for f in set(fa) & set(fb):
                if fa[f] != fb[f] or type(fa[f]) is not type(fb[f]):
                    per_field[str(f)] = per_field.get(str(f), 0) + 1
        if per_field:
            detail.append("fields changed: " + ", ".join(f"{f} in {n} rows" for f, n in sorted(per_field.items())))
        if added:
            detail.append(f"first added: {', '.join(added[:3])}")
        if removed:
            detail.append(f"first removed: {', '.join(removed[:3])}")
        out.append(SourceDiff(name, "changed", detail))
    return out
