"""Issue 16: arguments and authors' mistakes are checked before anything runs, each in one line."""
from __future__ import annotations

import os
import stat

import pytest

from pipelines.cli import main
from pipelines.errors import CatalogError
from pipelines.definitions.mixtures import load_mixture

from conftest import write
from test_bad_input import GOOD_ROWS, toy_project


def _build(tmp_path, *extra):
    cat_dir, tpl_dir, mixture = toy_project(tmp_path, GOOD_ROWS)
    out = tmp_path / "out"
    return ["--catalog", str(cat_dir), "--templates", str(tpl_dir), "build", "--mixture", str(mixture),
            "--output", str(out), *extra], out


@pytest.mark.parametrize("extra, message", [
    (["--num_shards", "-3"], "--num_shards must be at least 1 (got -3)"),
    (["--num_shards", "0"], "--num_shards must be at least 1 (got 0)"),
    (["--inputs_length", "0"], "--inputs_length must be at least 8 (got 0)"),
    (["--inputs_length", "4"], "--inputs_length must be at least 8 (got 4)"),
    (["--targets_length", "-5"], "--targets_length must be at least 4 (got -5)"),
    (["--seed", "-1"], "--seed must be at least 0 (got -1)"),
    (["--progress", "nan"], "--progress must be a finite number (got nan)"),
    (["--input_length", "512"], "unknown flag --input_length: neither a flanmix build flag nor a Beam pipeline option; "
                                "did you mean --inputs_length?"),
    (["--runnner=DirectRunner"], "unknown flag --runnner: neither a flanmix build flag nor a Beam pipeline option; "
                                 "did you mean --runner?"),
])
def test_bad_build_arguments_fail_in_one_line_before_anything_runs(tmp_path, capsys, extra, message):
    argv, out = _build(tmp_path, *extra)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err == f"flanmix: error: {message}\n"
    assert not out.exists()


def test_beam_options_still_pass(tmp_path, capsys):
    argv, out = _build(tmp_path, "--dry-run", "--runner", "DirectRunner", "--direct_num_workers=1")
    assert main(argv) == 0


def test_output_that_is_a_file_is_refused(tmp_path, capsys):
    argv, out = _build(tmp_path)
    out.write_text("not a folder")
    assert main(argv) == 2
    assert capsys.readouterr().err == f"flanmix: error: --output {out} is a file, not a directory\n"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_output_under_a_read_only_folder_is_refused(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        argv, _ = _build(tmp_path)
        argv[argv.index("--output") + 1] = str(locked / "out")
        assert main(argv) == 2
        assert capsys.readouterr().err == f"flanmix: error: --output {locked / 'out'}: {locked} is not writable\n"
    finally:
        locked.chmod(stat.S_IRWXU)


@pytest.mark.parametrize("content", [b"", b"\x00" * 10, os.urandom(5000)])
def test_vocabulary_that_is_not_a_model_is_refused_naming_it(tmp_path, capsys, content):
    model = tmp_path / "bad.model"
    model.write_bytes(content)
    argv, out = _build(tmp_path, "--vocab", str(model))
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"flanmix: error: vocabulary {model}: not a SentencePiece model") and err.count("\n") == 1
    assert not out.exists()


def test_truncated_vocabulary_is_refused(tmp_path, capsys):
    from pipelines import resources

    model = tmp_path / "trunc.model"
    model.write_bytes(open(resources.default_vocab_path(), "rb").read()[:1000])
    argv, _ = _build(tmp_path, "--vocab", str(model))
    assert main(argv) == 2
    assert f"vocabulary {model}: not a SentencePiece model (1000 bytes" in capsys.readouterr().err


@pytest.mark.parametrize("rates, message", [
    ((".nan", "1"), "member rate nan must be a finite number above 0"),
    ((".inf", "1"), "member rate inf must be a finite number above 0"),
    (("1.0e+308", "1.0e+308"), "member rates [1e+308, 1e+308] overflow when added; scale them down"),
])
def test_rates_that_are_not_finite_are_refused_at_mixture_validation(tmp_path, rates, message):
    path = write(tmp_path / "m.yaml", "schema_version: 1\nname: m\nmembers:\n"
                 f"  - {{dataset: a, rate: {rates[0]}}}\n  - {{dataset: b, rate: {rates[1]}}}\n")
    with pytest.raises(CatalogError) as info:
        load_mixture(path)
    assert str(info.value) in (f"{path}: {message}",) or message in str(info.value)


def test_a_directory_where_a_source_file_should_be_is_refused_before_the_job(tmp_path, capsys):
    argv, out = _build(tmp_path, "--strict")
    data = tmp_path / "data" / "toy.tsv"
    data.unlink()
    data.mkdir()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"{data} is a directory, not a file (loader.args.path names files" in err and err.count("\n") == 1
    assert not out.exists()


def test_lint_reads_every_row_of_a_small_local_source(tmp_path, capsys):
    rows = GOOD_ROWS * 5 + "Q?\t\tR.\n"  # row 11 renders empty targets; the default --rows 3 never reached it
    cat_dir, tpl_dir, _ = toy_project(tmp_path, rows)
    assert main(["--catalog", str(cat_dir), "--templates", str(tpl_dir), "templates", "lint"]) == 1
    err = capsys.readouterr().err
    assert "dataset toy_qa row train:11 (toy.tsv): template toy_plain: rendered empty targets" in err


def test_lint_fails_on_a_local_source_that_does_not_exist(tmp_path, capsys):
    cat_dir, tpl_dir, _ = toy_project(tmp_path, GOOD_ROWS)
    (tmp_path / "data" / "toy.tsv").unlink()
    assert main(["--catalog", str(cat_dir), "--templates", str(tpl_dir), "templates", "lint"]) == 1
    assert (f"dataset toy_qa: its local source {tmp_path / 'data' / 'toy.tsv'} does not exist (a build would skip "
            "this dataset)") in capsys.readouterr().err


BROKEN = "schema_version: 1\nname: broken_one\ncollections: [cot]\nnot: [valid\n"


def test_one_broken_entry_does_not_break_commands_that_do_not_need_it(tmp_path, capsys):
    cat_dir, tpl_dir, mixture = toy_project(tmp_path, GOOD_ROWS)
    write(cat_dir / "broken_one.yaml", BROKEN)
    assert main(["--catalog", str(cat_dir), "catalog", "list"]) == 0
    captured = capsys.readouterr()
    assert "toy_qa" in captured.out
    assert captured.err.startswith(f"flanmix: warning: catalog entry left out, it does not load: {cat_dir / 'broken_one.yaml'}: line 5")
    # lint reports it
    assert main(["--catalog", str(cat_dir), "--templates", str(tpl_dir), "templates", "lint"]) == 1
    assert f"ERROR {cat_dir / 'broken_one.yaml'}: line 5" in capsys.readouterr().err
    # a build that covers the broken entry's collection refuses; one naming only toy_qa goes on
    cot = write(tmp_path / "cot_mix.yaml", "schema_version: 1\nname: cot_mix\nmembers: [{collection: cot}]\n")
    out = tmp_path / "out"
    assert main(["--catalog", str(cat_dir), "--templates", str(tpl_dir), "build", "--mixture", str(cot), "--output", str(out)]) == 2
    assert "mixture cot_mix needs 1 catalog entry that do not load; fix it first:" in capsys.readouterr().err
    assert not out.exists()
    assert main(["--catalog", str(cat_dir), "--templates", str(tpl_dir), "build", "--mixture", str(mixture),
                 "--output", str(out), "--dry-run"]) == 0


def test_plus_catalog_adds_user_datasets_to_the_shipped_catalog(tmp_path, capsys):
    cat_dir, tpl_dir, _ = toy_project(tmp_path, GOOD_ROWS)
    entry = cat_dir / "toy_qa.yaml"
    entry.write_text(entry.read_text().replace("collections: [cot]", "collections: [user]").replace("templates: [toy]", "templates: [cot_qa]"))
    assert main(["--catalog", f"+{cat_dir}", "catalog", "list", "--collection", "user"]) == 0
    assert capsys.readouterr().out.split()[0] == "toy_qa"
    assert main(["--catalog", f"+{cat_dir}", "catalog", "show", "cot_gsm8k"]) == 0
