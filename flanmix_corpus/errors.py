"""The base of every error a flanmix user can act on (the CLI prints these without a traceback)."""


class FlanmixError(Exception):
    """Base class: the CLI prints these without a traceback and exits non-zero."""


class CorpusError(FlanmixError):
    """A corpus cannot be read: no manifest, or not the files or layout a reader needs."""
