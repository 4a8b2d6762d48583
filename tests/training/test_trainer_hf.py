"""Pretrained weights in, Hugging Face checkpoints out: parity with `transformers` T5 (T5.1.1 config,
gated-GELU, untied embeddings) in both directions, exact export -> import round trips (HF, the
decoder-only format, T5X), and `flanmix train --init` / `flanmix export` through the CLI."""
from __future__ import annotations

import dataclasses
import json

import trainer_testing  # noqa: F401  (must come first: makes `trainer` the package under test)

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from trainer import convert_hf, t5x_import
from trainer.config import MODEL_SIZES
from trainer.errors import CheckpointMismatchError
from trainer.export import read_export, write_hf
from trainer.model import build_model

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

CFG = dataclasses.replace(MODEL_SIZES["tiny"], vocab_size=128)


def hf_model(seed: int = 0):
    config = {k: v for k, v in convert_hf.hf_config(CFG).items() if k not in ("architectures", "torch_dtype")}
    torch.manual_seed(seed)
    return transformers.T5ForConditionalGeneration(transformers.T5Config(**config)).eval()


def inputs(seed: int = 0):
    """Two rows; the second has encoder padding (HF attention_mask 0, flanmix segment id 0)."""
    rng = np.random.default_rng(seed)
    enc, dec = rng.integers(2, 128, (2, 12)), rng.integers(2, 128, (2, 7))
    enc_seg = np.ones_like(enc)
    enc_seg[1, 8:] = 0
    enc[1, 8:] = 0
    return enc, enc_seg, dec


def flanmix_logits(params, enc, enc_seg, dec):
    model = build_model(CFG, "encdec")
    return np.asarray(model.apply({"params": params}, jnp.asarray(enc), jnp.asarray(enc_seg), jnp.asarray(dec),
                                  jnp.ones_like(jnp.asarray(dec))))


def hf_logits(model, enc, enc_seg, dec):
    with torch.no_grad():
        return model(input_ids=torch.tensor(enc), attention_mask=torch.tensor(enc_seg),
                     decoder_input_ids=torch.tensor(dec)).logits.numpy()


def random_flanmix_params(seed=1):
    model = build_model(CFG, "encdec")
    x = jnp.zeros((1, 8), jnp.int32)
    return jax.tree.map(np.asarray, nn.unbox(model.init(jax.random.key(seed), x, x, x, x)["params"]))


def test_hf_weights_give_the_same_logits_in_flanmix():
    hf = hf_model()
    tensors = {k: v.detach().numpy() for k, v in hf.state_dict().items()}
    params = convert_hf.from_hf(tensors, CFG)
    enc, enc_seg, dec = inputs()
    ours, theirs = flanmix_logits(params, enc, enc_seg, dec), hf_logits(hf, enc, enc_seg, dec)
    assert np.abs(theirs).max() > 1.0  # not a trivially small output
    np.testing.assert_allclose(ours, theirs, atol=1e-4, rtol=0)


def test_flanmix_export_loads_in_transformers_with_the_same_logits_and_reimports_exactly(tmp_path):
    params = random_flanmix_params()
    spm = tmp_path / "vocab.model"
    spm.write_bytes(b"sentencepiece bytes")
    written = write_hf(params, CFG, "encdec", str(tmp_path / "hf"), str(spm))
    assert set(written) == {"config.json", "model.safetensors", "generation_config.json", "spiece.model"}
    hf = transformers.T5ForConditionalGeneration.from_pretrained(str(tmp_path / "hf")).eval()
    enc, enc_seg, dec = inputs(1)
    np.testing.assert_allclose(hf_logits(hf, enc, enc_seg, dec), flanmix_logits(params, enc, enc_seg, dec),
                               atol=1e-4, rtol=0)

    cfg, layout, dtype, tensors = read_export(str(tmp_path / "hf"))
    assert (cfg.d_model, cfg.num_heads, cfg.d_kv, cfg.vocab_size, layout, dtype) == (64, 4, 16, 128, "encdec", "float32")
    back = convert_hf.flatten(convert_hf.from_hf(tensors, cfg))
    original = convert_hf.flatten(params)
    assert back.keys() == original.keys()
    for path, array in original.items():
        np.testing.assert_array_equal(back[path], array, err_msg="/".join(path))


def test_decoder_only_export_round_trips_exactly(tmp_path):
    model = build_model(CFG, "decoder")
    x = jnp.zeros((1, 8), jnp.int32)
    params = jax.tree.map(np.asarray, nn.unbox(model.init(jax.random.key(2), x, x)["params"]))
    write_hf(params, CFG, "decoder", str(tmp_path / "dec"), None)
    config = json.loads((tmp_path / "dec" / "config.json").read_text())
    assert config["format"] == "flanmix-decoder-only" and config["model"]["d_model"] == 64
    cfg, layout, _, tensors = read_export(str(tmp_path / "dec"))
    assert layout == "decoder" and "decoder.block.1.layer.1.DenseReluDense.wo.weight" in tensors
    assert not any("EncDecAttention" in k or k.startswith("encoder.") for k in tensors)
    back = convert_hf.flatten(convert_hf.from_hf(tensors, cfg, "decoder"))
    for path, array in convert_hf.flatten(params).items():
        np.testing.assert_array_equal(back[path], array, err_msg="/".join(path))


def test_t5x_checkpoint_directory_is_read_into_identical_parameters(tmp_path):
    params = random_flanmix_params(3)
    target = t5x_import.from_flanmix(params, CFG)
    assert target[("encoder", "layers_0", "attention", "query", "kernel")].shape == (64, 64)  # T5X's 2-D kernels
    inline = {p for p in target if p[-1] == "scale"}  # small arrays inline in the msgpack, like T5X
    t5x_import.write_t5x(str(tmp_path / "model"), 1000, target, inline=inline)
    assert (tmp_path / "model" / "checkpoint_1000" / "target.decoder.logits_dense.kernel" / ".zarray").exists()

    from trainer.init_checkpoint import params_for, read_init

    init = read_init(str(tmp_path / "model"))
    assert init.kind == "t5x" and init.model_cfg.architecture() == dataclasses.replace(CFG, name="init").architecture()
    expected = {p: a.shape for p, a in convert_hf.flatten(params).items()}
    back = convert_hf.flatten(params_for(init, CFG, expected))
    for path, array in convert_hf.flatten(params).items():
        np.testing.assert_array_equal(back[path], array, err_msg="/".join(path))

    wide = {**expected, ("token_embedder", "embedding"): (128, 512)}
    with pytest.raises(CheckpointMismatchError, match=r"token_embedder/embedding has shape \(128, 64\) in the "
                                                      r"checkpoint, the model needs \(128, 512\)"):
        params_for(init, CFG, wide)


def write_encdec_corpus(root, vocab_size=100):
    """A hand-written encdec corpus: 8 rows, inputs 16 / targets 8, two examples per row."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    names = ("inputs", "inputs_segment_ids", "inputs_positions", "targets", "targets_segment_ids", "targets_positions")
    rows = {n: [] for n in names}
    for _ in range(8):
        for side, length, sizes in (("inputs", 16, (6, 5)), ("targets", 8, (3, 3))):
            ids, seg, pos = np.zeros(length, np.int32), np.zeros(length, np.int32), np.zeros(length, np.int32)
            at = 0
            for s, n in enumerate(sizes, start=1):
                ids[at:at + n] = list(rng.integers(3, vocab_size, n - 1)) + [1]
                seg[at:at + n], pos[at:at + n] = s, np.arange(n)
                at += n
            rows[side].append(ids.tolist())
            rows[f"{side}_segment_ids"].append(seg.tolist())
            rows[f"{side}_positions"].append(pos.tolist())
    (root / "parquet").mkdir(parents=True)
    pq.write_table(pa.table({n: pa.array(v, pa.list_(pa.int32())) for n, v in rows.items()}),
                   root / "parquet" / "e-00000-of-00001.parquet")
    manifest = {"layout": "encdec", "sequence_length": {"inputs": 16, "targets": 8},
                "vocabulary": {"vocab_size": vocab_size, "sha256": "cd" * 32, "path": "test"},
                "files": [{"path": "parquet/e-00000-of-00001.parquet", "num_rows": 8}]}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def save_hf_dir(hf, src, weights: str):
    """An HF directory as published: config.json + model.safetensors or pytorch_model.bin (no tied copies)."""
    src.mkdir()
    (src / "config.json").write_text(json.dumps(convert_hf.hf_config(CFG)))
    state = {k: v.detach().clone().contiguous() for k, v in hf.state_dict().items()
             if k not in ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight")}
    if weights == "safetensors":
        from safetensors.torch import save_file

        save_file(state, str(src / "model.safetensors"))
    else:
        torch.save(state, src / "pytorch_model.bin")
    return src


def test_pytorch_bin_and_safetensors_directories_read_the_same(tmp_path):
    from trainer.init_checkpoint import params_for, read_init

    hf = hf_model(5)
    expected = {p: a.shape for p, a in convert_hf.flatten(random_flanmix_params()).items()}
    a, b = (read_init(str(save_hf_dir(hf, tmp_path / w, w))) for w in ("safetensors", "pytorch_model.bin"))
    assert a.model_cfg == b.model_cfg and (a.kind, a.layout, a.model_cfg.vocab_size) == ("hf", "encdec", 128)
    pa, pb = (convert_hf.flatten(params_for(x, CFG, expected)) for x in (a, b))
    for path in expected:
        np.testing.assert_array_equal(pa[path], pb[path], err_msg="/".join(path))


@pytest.mark.slow
def test_train_init_from_hf_then_export_through_the_cli(tmp_path, capsys):
    """HF directory -> `flanmix train --init` (one step at a negligible learning rate) -> `flanmix export`
    -> transformers: the same logits as the model we started from."""
    from pipelines import cli as flanmix_cli

    hf = hf_model(4)
    src = save_hf_dir(hf, tmp_path / "hf_src", "safetensors")
    corpus = write_encdec_corpus(tmp_path / "corpus")
    argv = ["train", "--corpus", str(corpus), "--out", str(tmp_path / "run"), "--init", str(src), "--steps", "1",
            "--batch_size", "2", "--learning_rate", "1e-30", "--eval_holdout_every", "0", "--dropout_rate", "0"]
    assert flanmix_cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "init from hf checkpoint" in out and "vocab_size 128" in out and "warning: " in out
    assert flanmix_cli.main(["export", "--checkpoint", str(tmp_path / "run"), "--to", "hf", str(tmp_path / "hf_out")]) == 0
    exported = transformers.T5ForConditionalGeneration.from_pretrained(str(tmp_path / "hf_out")).eval()
    enc, enc_seg, dec = inputs(2)
    np.testing.assert_allclose(hf_logits(exported, enc, enc_seg, dec), hf_logits(hf, enc, enc_seg, dec),
                               atol=1e-4, rtol=0)

    # A named --model that the checkpoint does not fit: refused with the first parameter and both shapes.
    argv = ["train", "--corpus", str(corpus), "--out", str(tmp_path / "run2"), "--init", str(src), "--model", "small"]
    assert flanmix_cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "first mismatching parameter shared.weight (token_embedder/embedding) has shape (128, 64)" in err
    assert "the model needs (128, 512)" in err
