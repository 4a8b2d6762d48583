"""Orbax checkpoints in OUT/checkpoints/<step>/: the train state plus a JSON description of the run.

Resuming is exact because the state is all there is: parameters, Adafactor statistics and the step.
The batch for step s and the dropout key for step s are pure functions of (seed, s) (see
`trainer.data`, `trainer.train`), so nothing about the data stream needs saving.

The JSON item (`meta`) records what the parameters are only valid for: the model architecture, the
corpus layout and the vocabulary's sha256. `check_resume` refuses to continue a run on anything else.
"""
from __future__ import annotations

import os
from typing import Any

import orbax.checkpoint as ocp

from trainer.errors import CheckpointMismatchError


def _absolute(path: str) -> str:
    return path if "://" in path else os.path.abspath(path)


class Checkpoints:
    """A thin wrapper over `ocp.CheckpointManager` with two items: "state" (a pytree) and "meta" (JSON)."""

    def __init__(self, directory: str, keep: int = 3):
        self.directory = _absolute(directory)
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True),
            item_names=("state", "meta"),
        )

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state: Any, meta: dict) -> None:
        """Starts an asynchronous save; `close()` (or the next save) waits for it."""
        self.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
                          force=True)

    def restore_meta(self, step: int) -> dict:
        return self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]

    def restore_state(self, step: int, abstract_state: Any) -> Any:
        """`abstract_state`: a tree of `jax.ShapeDtypeStruct` with shardings, so arrays land where they belong."""
        return self.manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state)))["state"]

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


def run_meta(model_architecture: dict, layout: str, vocab_sha256: str, vocab_size: int, lengths: dict,
             train_config: dict) -> dict:
    return {
        "model": model_architecture,
        "layout": layout,
        "vocabulary": {"sha256": vocab_sha256, "vocab_size": vocab_size},
        "sequence_length": dict(lengths),
        "train_config": train_config,
    }


RUN_DEFINING = {
    "seed": "the batch order and dropout of every step derive from it",
    "batch_size": "step s would read other rows than the first run's step s",
    "eval_holdout_every": "a changed holdout rule trains on rows the first run held out for eval",
}


def check_resume(saved: dict, current: dict, directory: str) -> None:
    """Refuse to resume when the parameters would mean something else (a different architecture, layout or
    vocabulary) or when the continued run would not be the same run: another corpus, seed, batch size or
    holdout rule. (Sequence lengths alone may change: the model has no absolute positions.)"""
    where = f"checkpoint in {directory}"
    if saved["layout"] != current["layout"]:
        raise CheckpointMismatchError(
            f"{where} was trained on layout {saved['layout']!r}; the corpus has layout {current['layout']!r}")
    if saved["vocabulary"]["sha256"] != current["vocabulary"]["sha256"]:
        raise CheckpointMismatchError(
            f"{where} was trained with vocabulary sha256 {saved['vocabulary']['sha256']}; the corpus uses "
            f"{current['vocabulary']['sha256']} (token ids would mean different pieces)")
    saved_fp, current_fp = saved.get("corpus_fingerprint"), current.get("corpus_fingerprint")
    if saved_fp and current_fp and saved_fp != current_fp:
        raise CheckpointMismatchError(
            f"{where} was trained on another corpus (fingerprint {saved_fp[:12]}, this corpus {current_fp[:12]}: its "
            "shards, row counts, lengths or vocabulary differ); resuming would mix the two streams and the held-out rows")
    saved_cfg, current_cfg = saved.get("train_config") or {}, current.get("train_config") or {}
    for key, why in RUN_DEFINING.items():
        if key in saved_cfg and key in current_cfg and saved_cfg[key] != current_cfg[key]:
            raise CheckpointMismatchError(
                f"{where} was trained with --{key} {saved_cfg[key]}; this run has --{key} {current_cfg[key]} ({why}); "
                f"use another --out or the same --{key}")
    diff = {k: (v, current["model"].get(k)) for k, v in saved["model"].items() if current["model"].get(k) != v}
    if diff:
        details = ", ".join(f"{k} {a} (checkpoint) vs {b} (this run)" for k, (a, b) in sorted(diff.items()))
        raise CheckpointMismatchError(f"{where} holds a different model: {details}; use another --out or the same --model")
