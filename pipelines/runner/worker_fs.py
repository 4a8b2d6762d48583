"""Filesystem options for every worker, on every runner: they travel inside the job's functions.

Beam gives its SDK workers the pipeline options through the runner, and not every runner does:
the local runner's `multi_processing` workers start with empty options (`S3ClientError: Unable to
locate credentials [while running 'Pack/SpillRuns']`), and the stock worker pool of the portable
Job API (`worker_pool_main`, what Flink and Spark job servers use with `--environment_type
EXTERNAL`) starts its harness without `FileSystems.set_options` (`ValueError: Must provide one of
client or options [while running 'WriteCorpus/WriteShard']`).

So the launcher attaches a `FilesystemOptions` object to every DoFn and CombineFn of the built
pipeline (`attach`). It carries the explicitly given options of Beam's filesystem option groups
(`GoogleCloudOptions`, `S3Options`, `AzureOptions`, `HadoopFileSystemOptions`) and nothing else.
A worker unpickles a stage's functions before it runs any element of that stage; unpickling the
carrier calls `FileSystems.set_options` with those options (`_restore`). FileSystems keeps its
options per process, so every process that runs any of the job's functions has them: no
environment variables, nothing runner-specific, the same on Dataflow (where it repeats what the
harness already did) as in a worker pool.

What travels: the values of those flags as given (S3 keys included, as they are in the job's
pipeline options on any runner). Nothing is carried when none were given.
"""
from __future__ import annotations

import argparse
import threading

from apache_beam.options.pipeline_options import (
    AzureOptions,
    GoogleCloudOptions,
    HadoopFileSystemOptions,
    PipelineOptions,
    S3Options,
)

GROUPS = (GoogleCloudOptions, S3Options, AzureOptions, HadoopFileSystemOptions)
ATTRIBUTE = "_flanmix_filesystem_options"
_applied_lock = threading.Lock()
_applied: tuple | None = None


def _dests() -> frozenset[str]:
    names = set()
    for group in GROUPS:
        parser = argparse.ArgumentParser(add_help=False)
        group._add_argparse_args(parser)
        names.update(a.dest for a in parser._actions)
    return frozenset(names)


FILESYSTEM_DESTS = _dests()


def filesystem_options(options: PipelineOptions) -> dict:
    """The explicitly given options of Beam's filesystem option groups, {dest: value}."""
    given = options.get_all_options(drop_default=True, retain_unknown_options=False)
    return {k: v for k, v in sorted(given.items()) if k in FILESYSTEM_DESTS and v is not None}


def apply(values: dict) -> None:
    """`FileSystems.set_options` with these options, once per process for the same values."""
    global _applied
    from apache_beam.io.filesystems import FileSystems

    key = tuple(sorted((k, repr(v)) for k, v in values.items()))
    with _applied_lock:
        if _applied == key and FileSystems._pipeline_options is not None:
            return
        FileSystems.set_options(PipelineOptions.from_dictionary(dict(values)))
        _applied = key


def _restore(values: dict) -> "FilesystemOptions":
    apply(values)
    return FilesystemOptions(values)


class FilesystemOptions:
    """Carried by a DoFn or CombineFn; unpickling it applies the options (see the module doc)."""

    def __init__(self, values: dict):
        self.values = dict(values)

    def __reduce__(self):
        return _restore, (self.values,)

    def __repr__(self) -> str:
        return f"FilesystemOptions({sorted(self.values)})"


def attach(pipeline, options: PipelineOptions) -> int:
    """Give every DoFn and CombineFn of `pipeline` the filesystem options; returns how many got them
    (0 when no filesystem option was given: nothing to carry)."""
    from apache_beam.pipeline import PipelineVisitor

    values = filesystem_options(options)
    if not values:
        return 0
    carrier = FilesystemOptions(values)
    fns: dict[int, object] = {}

    class Visitor(PipelineVisitor):
        def visit_transform(self, applied):
            fn = getattr(applied.transform, "fn", None)
            if fn is not None and not isinstance(fn, type):
                fns[id(fn)] = fn

        def enter_composite_transform(self, applied):
            self.visit_transform(applied)  # CombinePerKey / CombineGlobally hold their CombineFn here

    pipeline.visit(Visitor())
    count = 0
    for fn in fns.values():
        try:
            setattr(fn, ATTRIBUTE, carrier)
            count += 1
        except (AttributeError, TypeError):  # a function without a __dict__: its stage has others
            pass
    return count
