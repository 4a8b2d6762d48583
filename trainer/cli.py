"""`flanmix train` (registered by `pipelines.cli`) and `python -m trainer`: one flag per `TrainConfig` field.

    flanmix train --corpus out/demo --model tiny --steps 20 --batch_size 2 --log_every 5 --out ckpt/    # CPU-sized

Importing this module is cheap (no JAX); the trainer loads when the command runs.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Sequence

from flanmix_corpus.errors import FlanmixError
from trainer.config import TrainConfig

DESCRIPTION = ("Train a T5.1.1-style model on a flanmix corpus (Adafactor, constant learning rate). "
               "Rerunning with the same --out resumes from its newest checkpoint.")


def _boolean(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags from the dataclass: the field name is the flag, its `help` metadata the help text."""
    for f in dataclasses.fields(TrainConfig):
        kwargs = {"help": f.metadata.get("help", "").replace("%", "%%")}
        if f.metadata.get("choices"):
            kwargs["choices"] = f.metadata["choices"]
        if f.default is dataclasses.MISSING:
            kwargs.update(required=True, type=str)
        elif isinstance(f.default, bool):
            kwargs.update(default=f.default, type=_boolean, metavar="{true,false}")
            kwargs["help"] += " (default: %(default)s)"
        else:
            kwargs.update(default=f.default, type=type(f.default))
            kwargs["help"] += " (default: %(default)s)"
        parser.add_argument(f"--{f.name}", **kwargs)


def add_train_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("train", help="train a T5-style model on a built corpus", description=DESCRIPTION)
    add_train_arguments(parser)
    return parser


def add_export_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("export", help="write a trained checkpoint in another ecosystem's format",
                                   description="Write the newest (or --step) checkpoint of a `flanmix train` run as a "
                                               "Hugging Face T5 directory (config.json, model.safetensors, spiece.model).")
    parser.add_argument("--checkpoint", required=True, help="the --out directory of `flanmix train` (or its checkpoints/)")
    parser.add_argument("--to", required=True, nargs=2, metavar=("FORMAT", "DIR"), help="hf DIR")
    parser.add_argument("--step", type=int, default=None, help="checkpoint step (default: the newest)")
    return parser


def add_parsers(subparsers) -> None:
    """Every trainer verb (`train`, `export`, `eval`), for `pipelines.cli`."""
    add_train_parser(subparsers)
    add_export_parser(subparsers)
    try:
        from trainer.eval import add_eval_parser
    except ImportError:  # eval not built in this checkout
        return
    add_eval_parser(subparsers)


COMMANDS = ("train", "export", "eval")


def dispatch(args: argparse.Namespace) -> int:
    """Run a trainer verb parsed by `add_parsers`."""
    if args.cmd == "train":
        return cmd_train(args)
    if args.cmd == "export":
        return cmd_export(args)
    from trainer.eval import cmd_eval

    return cmd_eval(args)


def cmd_export(args: argparse.Namespace) -> int:
    from trainer.export import export

    export(args.checkpoint, args.to[0], args.to[1], step=args.step)
    return 0


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)})


def cmd_train(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    try:
        from trainer.train import run
    except ImportError as exc:  # the JAX stack is an extra: pip install -e ".[trainer]"
        raise FlanmixError(f"the trainer needs the 'trainer' extra (jax, flax, optax, orbax): {exc}") from None
    run(config)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer", description=DESCRIPTION)
    add_train_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return cmd_train(args)
    except FlanmixError as exc:
        print(f"flanmix train: error: {exc}", file=sys.stderr)
        return 2
