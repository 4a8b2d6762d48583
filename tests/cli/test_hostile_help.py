"""Issue 16: every flag of every verb has help text that states its default; the synopsis lists every verb."""
from __future__ import annotations

import argparse

from pipelines.cli import __doc__ as SYNOPSIS
from pipelines.cli import make_parser


def _parsers(parser, path=("flanmix",)):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, path + (name,))


def test_every_flag_has_help_and_states_its_default():
    missing = []
    for path, parser in _parsers(make_parser()):
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            name = " ".join(path) + " " + (action.option_strings[0] if action.option_strings else action.dest)
            text = action.help or ""
            if not text or text == argparse.SUPPRESS:
                missing.append(f"{name}: no help")
            elif action.option_strings and not isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)) \
                    and "default" not in text and not action.required:
                missing.append(f"{name}: help does not state the default")
    assert missing == []


def test_synopsis_lists_every_verb():
    verbs = [a for a in make_parser()._actions if isinstance(a, argparse._SubParsersAction)][0].choices
    for verb in verbs:
        assert f"flanmix {verb} " in SYNOPSIS, verb


def test_mixtures_show_summarises_unreadable_sources_in_one_line(capsys, monkeypatch, tmp_path):
    from pipelines.cli import main

    assert main(["mixtures", "show", "demo", "--no-count", "--verbose"]) == 0
    assert "mixture demo:" in capsys.readouterr().out
    from pipelines.planning.mixture_report import format_plan
    from pipelines.definitions.mixtures import load_mixture

    skipped = [(f"d{i}", f"reason {i}") for i in range(1745)]
    text = format_plan(load_mixture("demo"), [], 0, skipped, verbose=False)
    summary = [line for line in text.splitlines() if line.startswith("not readable here")]
    assert summary == ["not readable here: 1745 datasets, their sizes assumed (e.g. d0: reason 0); "
                       "--verbose lists each with its reason"]
    assert format_plan(load_mixture("demo"), [], 0, skipped, verbose=True).count("not readable here: d") == 1745
