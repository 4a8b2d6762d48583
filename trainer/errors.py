"""Errors a user can act on; the CLI prints them without a traceback. Each names both sides of a mismatch."""
from flanmix_corpus.errors import FlanmixError


class ConfigError(FlanmixError):
    """A training option is invalid on its own (unknown model size, bad batch size for the mesh)."""


class CorpusError(FlanmixError):
    """A corpus cannot be read: no manifest, no shards of the requested format, unreadable files."""


class CorpusMismatchError(CorpusError):
    """The corpus does not fit the model or run: layout, vocabulary, sequence lengths or shard shapes
    differ from what was expected. The message names the corpus value and the expected value."""


class CheckpointMismatchError(FlanmixError):
    """A checkpoint in --out was written for a different model, vocabulary or corpus layout."""
