"""The CLI surfaces a user runs by hand."""
from __future__ import annotations

from pipelines.cli import main


def test_catalog_list_and_show(capsys):
    assert main(["catalog", "list", "--collection", "cot"]) == 0
    out = capsys.readouterr().out
    assert "cot_gsm8k" in out and "stream_aqua" in out and "task036" not in out
    assert main(["catalog", "show", "cot_gsm8k"]) == 0
    assert "loader:" in capsys.readouterr().out


def test_templates_lint_passes_on_the_shipped_catalog(capsys):
    assert main(["templates", "lint", "--rows", "2"]) == 0
    assert "templates lint: OK" in capsys.readouterr().out


def test_templates_preview_renders_real_rows(capsys):
    assert main(["templates", "preview", "cot_gsm8k", "-n", "3"]) == 0
    out = capsys.readouterr().out
    assert out.count("=== cot_gsm8k row train:") == 3
    assert "Natalia" in out  # the first real GSM8K question
