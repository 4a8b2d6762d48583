"""`flanmix eval`: KV-cache greedy decoding equals the full forward pass; held-out rows are scored per task."""
from __future__ import annotations

import dataclasses
import json

import trainer_testing  # noqa: F401  (must come first: makes `trainer` the package under test)

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from trainer.config import MODEL_SIZES
from trainer.decode import EOS, greedy_decode
from trainer.model import build_model

CFG = dataclasses.replace(MODEL_SIZES["tiny"], vocab_size=128)


def test_cached_greedy_decoding_gives_the_full_forward_logits():
    model = build_model(CFG, "encdec")
    rng = np.random.default_rng(0)
    enc = rng.integers(2, 128, (3, 10)).astype(np.int32)
    seg = np.ones_like(enc)
    seg[2, 6:], enc[2, 6:] = 0, 0
    params = nn.unbox(model.init(jax.random.key(0), enc, seg, enc[:, :6], seg[:, :6])["params"])
    length = 9
    tokens, step_logits = greedy_decode(params, CFG, jnp.asarray(enc), jnp.asarray(seg), length)
    tokens, step_logits = np.asarray(tokens), np.asarray(step_logits)
    # Teacher-force the decoded tokens through the full model: same logits at every step before EOS.
    decoder_in = np.concatenate([np.zeros((3, 1), np.int32), tokens[:, :-1]], axis=1)
    full = np.asarray(model.apply({"params": params}, enc, seg, decoder_in, np.ones_like(decoder_in)))
    for row in range(3):
        ends = list(tokens[row]).index(EOS) + 1 if EOS in tokens[row] else length
        np.testing.assert_allclose(step_logits[row, :ends], full[row, :ends], atol=1e-4, rtol=0)
        assert tokens[row, :ends].tolist() == full[row, :ends].argmax(-1).tolist()
        assert (tokens[row, ends:] == 0).all()


@pytest.mark.slow
def test_eval_scores_held_out_examples_per_task_through_the_cli(tmp_path, capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq
    from test_trainer_hf import write_encdec_corpus

    from pipelines import cli as flanmix_cli

    corpus = write_encdec_corpus(tmp_path / "corpus")
    shard = corpus / "parquet" / "e-00000-of-00001.parquet"
    table = pq.read_table(shard)
    provenance = [[f"task_a|t|zs|{i}", f"task_b|t|zs|{i}"] for i in range(table.num_rows)]
    pq.write_table(table.append_column("provenance", pa.array(provenance, pa.list_(pa.string()))), shard)
    argv = ["train", "--corpus", str(corpus), "--out", str(tmp_path / "run"), "--model", "tiny", "--steps", "1",
            "--batch_size", "2", "--eval_holdout_every", "4", "--eval_every", "0"]
    assert flanmix_cli.main(argv) == 0
    out = tmp_path / "eval.json"
    assert flanmix_cli.main(["eval", "--checkpoint", str(tmp_path / "run"), "--out", str(out), "--batch_size", "4"]) == 0
    result = json.loads(out.read_text())
    # Rows 0 and 4 of 8 are held out, two examples each: one of task_a and one of task_b per row.
    assert result["examples"] == 4 and result["step"] == 1 and result["holdout_every"] == 4
    assert {t: v["examples"] for t, v in result["per_task"].items()} == {"task_a": 2, "task_b": 2}
    assert 0.0 <= result["exact_match"] <= 1.0 and result["max_decode_length"] == 8
    assert "exact match" in capsys.readouterr().out
