"""Errors a user can act on. Every message names the file, entry, template, field or row at fault."""


from flanmix_corpus.errors import FlanmixError  # noqa: F401 - the base, shared with the trainer


class CatalogError(FlanmixError):
    """A catalog entry or mixture file is malformed or inconsistent."""


class TemplateError(FlanmixError):
    """A template does not parse, references an undeclared field, or renders badly."""


class LoaderError(FlanmixError):
    """A source cannot be read; the message says what was tried and how to provide the data."""


class RenderError(FlanmixError):
    """One row cannot be rendered; such rows go to the dead-letter output, not to the user."""
