"""Loaders by catalog `loader.type`. Adding a loader = one module + one line in `LOADERS`."""
from __future__ import annotations

from pipelines.errors import LoaderError
from pipelines.loaders.base import Loader, RawRow, SourceShard
from pipelines.loaders.cot_tsv import CotTsvLoader
from pipelines.loaders.hf_datasets import HfDatasetsLoader
from pipelines.loaders.niv2_json import Niv2JsonLoader
from pipelines.loaders.tabular import CsvLoader, JsonlLoader, ParquetLoader
from pipelines.loaders.tfds_source import TfdsLoader
from pipelines.sources.loader import SnapshotLoader

LOADERS: dict[str, type] = {
    CotTsvLoader.type_name: CotTsvLoader,
    Niv2JsonLoader.type_name: Niv2JsonLoader,
    HfDatasetsLoader.type_name: HfDatasetsLoader,
    TfdsLoader.type_name: TfdsLoader,
    JsonlLoader.type_name: JsonlLoader,
    CsvLoader.type_name: CsvLoader,
    ParquetLoader.type_name: ParquetLoader,
    SnapshotLoader.type_name: SnapshotLoader,  # `flanmix build --sources DIR` (pipelines/sources)
}


def get_loader(type_name: str) -> Loader:
    try:
        return LOADERS[type_name]()
    except KeyError:
        raise LoaderError(f"unknown loader type {type_name!r}; known: {sorted(LOADERS)}") from None


def offline_ready(type_name: str, args, source_split: str = "train") -> bool:
    """Whether the source can be read here without any network (local files present). Cheap: no
    rows are read. Loaders without the check count as not ready."""
    loader = get_loader(type_name)
    check = getattr(loader, "offline_ready", None)
    return bool(check and check(args, source_split))


__all__ = ["LOADERS", "Loader", "RawRow", "SourceShard", "get_loader", "offline_ready"]
