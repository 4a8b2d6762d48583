"""A thin JAX trainer for flanmix corpora: T5.1.1-style models finetuned with the Flan recipe.

It reads only what `flanmix build` publishes (manifest.json and the packed shards), so a corpus is
proven usable by training on it. Modules:

    config      frozen dataclasses: model sizes and every training hyperparameter
    data        manifest checks, shard readers, the deterministic batch order and held-out rows
    model       Flax encoder-decoder and decoder-only models with segment-aware attention
    losses      decoder inputs from packed targets, token-weighted cross-entropy and z-loss
    sharding    the device mesh (data, model axes) and the parameter partitioning rules
    checkpoint  Orbax save/restore plus the metadata that makes resuming safe
    errors      the errors a user can act on (each names both sides of a mismatch)
    metrics     FLOPs per row, peak FLOPs per device, the progress line
    train       the pure step functions and the loop (`run`)
    cli         `flanmix train` / `python -m trainer`

Nothing is imported at package import; JAX loads only when a module that needs it is imported.
"""
