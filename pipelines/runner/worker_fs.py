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

**One S3 client per process.** Beam's S3 filesystem builds a new boto3 client for every call
(open, match, rename, delete: 0.1-0.7 s of CPU each here; 38 of them were 19-27 s of one small S3
publish). `cache_s3_clients` (installed by `apply` and by the launcher) makes Beam's client wrapper
reuse one boto3 client per set of S3 options; boto3 clients are safe to share between threads.
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


_S3_FIELDS = ("s3_access_key_id", "s3_secret_access_key", "s3_session_token", "s3_endpoint_url", "s3_disable_ssl",
              "s3_region_name", "s3_api_version", "s3_verify")
_cache_lock = threading.Lock()
_s3_clients: dict[tuple, object] = {}  # the S3 options' values -> one boto3 client


def cache_s3_clients() -> None:
    """Make Beam's S3 client wrapper reuse one boto3 client per set of S3 options in this process
    (see the module docstring; each wrapper keeps its own download state). Idempotent."""
    try:
        from apache_beam.io.aws.clients.s3 import boto3_client
    except ImportError:  # Beam without its AWS extra: no s3:// at all
        return
    cls = boto3_client.Client
    if getattr(cls.__init__, "_flanmix_cached", False):
        return
    original = cls.__init__

    def __init__(self, options):
        if isinstance(options, PipelineOptions):
            view = options.view_as(S3Options)
            key = tuple(repr(getattr(view, name, None)) for name in _S3_FIELDS)
        else:
            key = tuple(repr(options.get(name)) for name in _S3_FIELDS)
        with _cache_lock:
            client = _s3_clients.get(key)
        if client is None:
            original(self, options)
            with _cache_lock:
                _s3_clients.setdefault(key, self.client)
            return
        self.client = client
        self._download_request = None
        self._download_stream = None
        self._download_pos = 0

    __init__._flanmix_cached = True
    cls.__init__ = __init__


def apply(values: dict) -> None:
    """`FileSystems.set_options` with these options, once per process for the same values."""
    global _applied
    from apache_beam.io.filesystems import FileSystems

    key = tuple(sorted((k, repr(v)) for k, v in values.items()))
    with _applied_lock:
        if _applied is not None and _applied[0] == key and FileSystems._pipeline_options is _applied[1]:
            return  # still the options this carrier set (nothing replaced them since)
        options = PipelineOptions.from_dictionary(dict(values))
        FileSystems.set_options(options)
        _applied = (key, options)
    cache_s3_clients()


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
