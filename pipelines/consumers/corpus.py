"""What every consumer needs from a corpus directory: its manifest, layout, lengths and files."""
from __future__ import annotations

from dataclasses import dataclass

from pipelines.formats import layouts as features
from pipelines.errors import FlanmixError
from pipelines.publish.manifest import read_manifest

PACKED_LAYOUTS = ("encdec", "decoder")


@dataclass(frozen=True)
class CorpusInfo:
    root: str
    manifest: dict
    layout: str  # "encdec" | "decoder" | "text" (--format jsonl)
    sequence_length: dict  # manifest["sequence_length"]; {} for text

    def files(self, kind: str) -> list[str]:
        """Full paths of the `kind/` shards ("tfrecord", "parquet" or "jsonl"), in shard order."""
        paths = sorted(f["path"] for f in self.manifest["files"] if f["path"].startswith(kind + "/"))
        if not paths:
            raise FlanmixError(f"corpus {self.root} lists no {kind}/ files (format {self.manifest.get('format', 'packed')}, "
                               f"layout {self.layout})")
        return [join(self.root, p) for p in paths]

    def feature_lengths(self) -> dict[str, int]:
        """{feature: length} of the packed int features, e.g. {"inputs": 512, ..., "targets_positions": 128}."""
        self.require_packed()
        return features.feature_lengths(self.layout, self.sequence_length)

    def require_packed(self) -> None:
        if self.layout not in PACKED_LAYOUTS:
            raise FlanmixError(f"corpus {self.root} has layout {self.layout!r} (a --format jsonl text export); "
                               f"this reader needs packed rows ({', '.join(PACKED_LAYOUTS)})")


def join(root: str, relative: str) -> str:
    return f"{root.rstrip('/')}/{relative}"


def open_corpus(corpus_dir: str) -> CorpusInfo:
    """Read `corpus_dir/manifest.json` (local, gs:// or s3://). A corpus without one is not published."""
    try:
        manifest = read_manifest(str(corpus_dir))
    except Exception as exc:  # noqa: BLE001 - FileSystems raises scheme-specific errors
        raise FlanmixError(f"cannot read {corpus_dir}/manifest.json ({exc}); is it a corpus published by "
                           f"`flanmix build`?") from None
    return CorpusInfo(str(corpus_dir), manifest, manifest.get("layout", "encdec"), dict(manifest.get("sequence_length") or {}))
