"""Open a published corpus: read `manifest.json` and list its shards. The one reader of a corpus
directory, for the consumers (`pipelines.consumers`) and the trainer.

    info = open_corpus("out/demo")
    info.layout, info.sequence_length      # "encdec", {"inputs": 2048, "targets": 512}
    info.files("parquet")                  # ["out/demo/parquet/demo-train-00000-of-00001.parquet"]
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from flanmix_corpus.errors import CorpusError
from flanmix_corpus.layouts import LAYOUT_ENCDEC, PACKED_LAYOUTS, feature_lengths

MANIFEST_NAME = "manifest.json"


def join(root: str, relative: str) -> str:
    return f"{str(root).rstrip('/')}/{relative}"


def read_bytes(path: str) -> bytes:
    """A local file, or through Beam's FileSystems for a URL (gs://, s3://, ...)."""
    if "://" not in path:
        with open(path, "rb") as handle:
            return handle.read()
    from apache_beam.io.filesystem import CompressionTypes
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
        return handle.read()


def read_manifest(corpus_dir: str) -> dict:
    """`corpus_dir/manifest.json`, parsed. Raises what the file system raises."""
    return json.loads(read_bytes(join(corpus_dir, MANIFEST_NAME)).decode("utf-8"))


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
            built = f", built with --formats {','.join(self.manifest['formats'])}" if self.manifest.get("formats") else ""
            raise CorpusError(f"corpus {self.root} lists no {kind}/ files (format {self.manifest.get('format', 'packed')}, "
                              f"layout {self.layout}{built})")
        return [join(self.root, p) for p in paths]

    def feature_lengths(self) -> dict[str, int]:
        """{feature: length} of the packed int features, e.g. {"inputs": 512, ..., "targets_positions": 128}."""
        self.require_packed()
        return feature_lengths(self.layout, self.sequence_length)

    def require_packed(self) -> None:
        if self.layout not in PACKED_LAYOUTS:
            raise CorpusError(f"corpus {self.root} has layout {self.layout!r} (a --format jsonl text export); "
                              f"this reader needs packed rows ({', '.join(PACKED_LAYOUTS)})")


def open_corpus(corpus_dir: str) -> CorpusInfo:
    """Read `corpus_dir/manifest.json` (local, gs:// or s3://). A corpus without one is not published."""
    try:
        manifest = read_manifest(str(corpus_dir))
    except Exception as exc:  # noqa: BLE001 - file systems raise scheme-specific errors
        raise CorpusError(f"cannot read {corpus_dir}/manifest.json ({exc}); is it a corpus published by "
                          f"`flanmix build`?") from None
    return CorpusInfo(str(corpus_dir), manifest, manifest.get("layout", LAYOUT_ENCDEC),
                      dict(manifest.get("sequence_length") or {}))
