"""`flanmix templates preview NAME --setting ...` (pipelines/cli/prompt_preview.py): each prompt setting
as the build makes it, from real shipped rows."""
from __future__ import annotations

from pipelines.cli import main

from buildkit import real_rows


def test_preview_shows_each_setting_as_the_build_makes_it(capsys, catalog):
    assert main(["templates", "preview", "task1146_country_capital", "-n", "6", "--setting", "fs_noopt"]) == 0
    out = capsys.readouterr().out
    definition = real_rows(catalog, "task1146_country_capital")[0].fields["definition"].strip()
    blocks = out.split("=== ")[1:]
    assert len(blocks) == 6 and all("fs_noopt" in b.splitlines()[0] for b in blocks)
    assert any("2 exemplar(s)" in b for b in blocks) and any("; own)" in b for b in blocks)
    assert all(b.count(definition) == 1 for b in blocks)  # the definition once, in every few-shot form
    assert main(["templates", "preview", "task1146_country_capital", "-n", "2", "--setting", "zs_noopt"]) == 0
    assert "(zs_noopt; zero_shot)" in capsys.readouterr().out
    assert main(["templates", "preview", "task1146_country_capital", "--setting", "zs_opt"]) != 0
    assert "no template serves zs_opt" in capsys.readouterr().err


def test_preview_of_an_options_setting_names_the_option_format(capsys, catalog, families):
    """Templates that place {{ options_block }} get a keyed format (named in the heading); templates
    with their own layout of the choices do not."""
    from pipelines.definitions.templates import bind_templates, places_options_block

    entry = catalog["anli_r1"]
    placing = {t.id for t in bind_templates(entry.templates, families, entry.template_vars) if places_options_block(t)}
    assert main(["templates", "preview", "anli_r1", "--fixtures", "-n", "3", "--setting", "zs_opt"]) == 0
    heads = [b.splitlines()[0] for b in capsys.readouterr().out.split("=== ")[1:]]
    assert heads and all("zs_opt" in h for h in heads)
    for h in heads:
        template = h.split("| template ")[1].split(" ")[0]
        assert ("; options " in h) == (template in placing), h
    assert any("; options " in h for h in heads)
