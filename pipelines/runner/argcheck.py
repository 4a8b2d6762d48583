"""Arguments checked before anything runs: a build with a bad flag fails in one line, at once,
instead of publishing `--0001-of--0003` files, dividing by zero inside the job or ignoring a typo.

- numbers: `--num_shards` >= 1, `--inputs_length` >= 8 and `--targets_length` >= 4 (the mixture
  schema's minimums), `--seed` >= 0, `--decoder_length` >= 2, `--pack_buffer`, `--target_examples`
  and `--target_tokens` >= 1;
- flags that are neither flanmix's nor a Beam pipeline option (Beam would ignore `--input_length
  512` silently): an error naming the closest known flag (`unknown_flags`);
- `--output`: a local path that is a file, or whose nearest existing folder is not writable;
- `--vocab`: a file that is not a SentencePiece model (truncated, random bytes) is refused by
  `vocab.Vocabulary` with its path;
- mixture rates that are not finite, or whose sum overflows (`check_rates`, from `load_mixture`).
"""
from __future__ import annotations

import argparse
import difflib
import functools
import math
import os
from typing import Iterable, Sequence

from pipelines.errors import CatalogError, FlanmixError

# Mixture schema minimums (schemas/mixture.schema.json: sequence_length).
MIN_INPUTS_LENGTH = 8
MIN_TARGETS_LENGTH = 4

_MINIMUMS = {
    "num_shards": 1, "inputs_length": MIN_INPUTS_LENGTH, "targets_length": MIN_TARGETS_LENGTH, "seed": 0,
    "decoder_length": 2, "pack_buffer": 1, "target_examples": 1, "target_tokens": 1, "progress": 0, "worker_start_timeout": 0,
}


def check_build_numbers(args: argparse.Namespace) -> None:
    """Raise FlanmixError for the first numeric build flag below its minimum (or not finite)."""
    for name, minimum in _MINIMUMS.items():
        value = getattr(args, name, None)
        if value is None:
            continue
        if isinstance(value, float) and not math.isfinite(value):
            raise FlanmixError(f"--{name} must be a finite number (got {value})")
        if value < minimum:
            raise FlanmixError(f"--{name} must be at least {minimum} (got {value})")


@functools.lru_cache(maxsize=1)
def beam_flags() -> frozenset[str]:
    """Every flag a Beam PipelineOptions class declares (all runners' options: they register on import)."""
    from apache_beam.options import pipeline_options as po

    seen, todo = set(), [po.PipelineOptions]
    flags: set[str] = set()
    while todo:
        cls = todo.pop()
        if cls in seen:
            continue
        seen.add(cls)
        todo.extend(cls.__subclasses__())
        add = cls.__dict__.get("_add_argparse_args")
        if add is None:
            continue
        sub = argparse.ArgumentParser(add_help=False, conflict_handler="resolve")
        try:
            add.__func__(cls, sub)
        except Exception:  # noqa: BLE001 - an options class that cannot describe itself adds nothing
            continue
        for action in sub._actions:
            flags.update(s for s in action.option_strings if s.startswith("--"))
    return frozenset(flags)


def _flag_names(tokens: Iterable[str]) -> list[str]:
    return [t.split("=", 1)[0] for t in tokens if t.startswith("--") and len(t) > 2]


def unknown_flags(rest: Sequence[str], known: Iterable[str]) -> None:
    """Raise FlanmixError naming the first flag in `rest` that neither flanmix (`known`) nor any
    Beam option declares, with the closest known flag suggested."""
    beam = beam_flags()
    ours = set(known)
    for flag in _flag_names(rest):
        if flag in beam:
            continue
        if flag.startswith("--no") and ("--" + flag[4:].lstrip("_-")) in beam:
            continue
        close = difflib.get_close_matches(flag, sorted(ours | beam), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise FlanmixError(f"unknown flag {flag}: neither a flanmix build flag nor a Beam pipeline option{hint}")
    for i, token in enumerate(rest):
        if not token.startswith("--") and (i == 0 or not rest[i - 1].startswith("--") or "=" in rest[i - 1]):
            raise FlanmixError(f"unexpected argument {token!r} (flags are --name value or --name=value)")


def check_output(output: str) -> None:
    """A local --output must be a folder (or not exist yet) under a writable folder."""
    if "://" in output and not output.startswith("file://"):
        return
    path = output[len("file://"):] if output.startswith("file://") else output
    if os.path.exists(path) and not os.path.isdir(path):
        raise FlanmixError(f"--output {output} is a file, not a directory")
    probe = os.path.abspath(path)
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if not os.path.isdir(probe):
        raise FlanmixError(f"--output {output}: {probe} is a file, so the directory cannot be made")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise FlanmixError(f"--output {output}: {probe} is not writable")


def check_rates(members: Sequence[dict], where: str) -> None:
    """Mixture member rates must be finite and positive and their sum must stay finite."""
    rates = [m["rate"] for m in members if isinstance(m, dict) and m.get("rate") is not None]
    for rate in rates:
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not math.isfinite(rate) or rate <= 0:
            raise CatalogError(f"{where}: member rate {rate!r} must be a finite number above 0")
    if rates and not math.isfinite(sum(float(r) for r in rates)):  # plain sum: fsum raises instead
        raise CatalogError(f"{where}: member rates {rates} overflow when added; scale them down")
