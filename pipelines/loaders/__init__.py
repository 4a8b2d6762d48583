"""Loaders by catalog `loader.type`. Adding a loader = one module + one line in `LOADERS`."""
from __future__ import annotations

from pipelines.errors import LoaderError
from pipelines.loaders.base import Loader, RawRow, SourceShard
from pipelines.loaders.cot_tsv import CotTsvLoader
from pipelines.loaders.niv2_json import Niv2JsonLoader

LOADERS: dict[str, type] = {
    CotTsvLoader.type_name: CotTsvLoader,
    Niv2JsonLoader.type_name: Niv2JsonLoader,
}


def get_loader(type_name: str) -> Loader:
    try:
        return LOADERS[type_name]()
    except KeyError:
        raise LoaderError(f"unknown loader type {type_name!r}; known: {sorted(LOADERS)}") from None


__all__ = ["LOADERS", "Loader", "RawRow", "SourceShard", "get_loader"]
