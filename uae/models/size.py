"""A model's size from its config alone, before anything is built: the parameter count of every family.

:func:`estimate_num_params` counts a :class:`~uae.models.config.UAEConfig`'s or a
:class:`~uae.models.dit_config.DiTDHConfig`'s parameters from its fields (within 0.5 % of the built
model for every registered config; the tests check it), and :func:`largest_size_field` names the field
that makes a config large. :func:`uae.models.loading.check_model_size` uses both to refuse an absurd
config (``decoder_depth: 100000`` in a ``config.json``) before any memory is allocated.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

Values = Mapping[str, Any]


def uae_num_params(v: Values) -> int:
    """Parameters of a UAE with the field values ``v`` (a :class:`~uae.models.config.UAEConfig` as a dict)."""
    c, e = v["encoder_dim"], v["decoder_dim"]
    h = round(v["encoder_mlp_ratio"] * c)
    hd = round(v["decoder_mlp_ratio"] * e)
    p, q = v["patch_size"], v["decoder_patch_size"]
    grid = v["encoder_pos_grid"] or v["img_size"] // p
    encoder = (
        v["encoder_depth"] * (4 * c * c + 2 * c * h + h + 11 * c)  # qkv, proj, mlp, norms, layer scale
        + 3 * p * p * c
        + c  # patch embedding
        + (2 + v["encoder_reg_tokens"] + grid * grid) * c  # cls, registers, positions, final norm
    )
    k, hidden = v["num_bands"], v["modulator_hidden_dim"]
    modulator = (
        k * c * hidden * v["modulator_in_kernel"] ** 2
        + hidden
        + hidden * c * v["modulator_out_kernel"] ** 2
        + c
        + (2 * k * k if v["band_mixing"] else 0)
    )
    decoder = (
        v["decoder_depth"] * (4 * e * e + 2 * e * hd + hd + 9 * e)
        + (c + 4) * e  # latent embedding, cls token, final norm
        + (e + 1) * q * q * 3  # pixel prediction
    )
    return encoder + modulator + decoder


def dit_num_params(v: Values) -> int:
    """Parameters of a DiT-DH with the field values ``v`` (a :class:`~uae.models.dit_config.DiTDHConfig` as a dict)."""
    c, p, d, dh = v["in_channels"], v["patch_size"], v["hidden_size"], v["head_hidden_size"]
    rows, cols = (int(s) // p for s in v["input_size"])
    rms = v["norm"] == "rmsnorm"

    def block(w: int, heads: int) -> int:
        if v["mlp"] == "swiglu":
            hidden = int(2 / 3 * int(w * v["mlp_ratio"]))
            mlp = w * 2 * hidden + 2 * hidden + hidden * w + w
        else:
            hidden = int(w * v["mlp_ratio"])
            mlp = 2 * w * hidden + hidden + w
        qk = 2 * (w // heads) * (1 if rms else 2) if v["qk_norm"] else 0
        return 4 * w * w + 4 * w + 6 * w * w + 6 * w + mlp + (2 * w if rms else 0) + qk

    f = v["fourier_size"]
    null = 1 if v["class_dropout_prob"] > 0 else 0
    return (
        c * p * p * (d + dh)
        + d
        + dh  # the two patch embeddings
        + (d * dh + dh if d != dh else 0)
        + f
        + 2 * f * d
        + d
        + d * d
        + d  # time embedding
        + (v["num_classes"] + null) * d
        + (rows * cols * d if v["pos_embed"] != "none" else 0)
        + v["depth"] * block(d, v["num_heads"])
        + v["head_depth"] * block(dh, v["head_num_heads"])
        + (dh if rms else 0)
        + dh * 2 * dh
        + 2 * dh
        + dh * p * p * c
        + p * p * c  # final layer
    )


#: Config class name -> its parameter counter (the classes are not imported: this module stays light).
COUNTERS: dict[str, Callable[[Values], int]] = {"UAEConfig": uae_num_params, "DiTDHConfig": dit_num_params}


def estimate_num_params(config: Any) -> int | None:
    """The parameter count of a config of a known family (``None`` for another kind of config)."""
    counter = COUNTERS.get(type(config).__name__)
    return None if counter is None else int(counter(dataclasses.asdict(config)))


def largest_size_field(config: Any) -> str | None:
    """The numeric field whose default value would shrink the estimate the most (the one to blame).

    ``None`` when the config's family has no counter or no numeric field changes the count.
    """
    counter = COUNTERS.get(type(config).__name__)
    if counter is None:
        return None
    values = dataclasses.asdict(config)
    total = counter(values)
    best, best_drop = None, 0
    for f in dataclasses.fields(config):
        value = values[f.name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or f.default is dataclasses.MISSING:
            continue
        try:
            drop = total - counter({**values, f.name: f.default})
        except (ArithmeticError, TypeError, ValueError):
            continue
        if drop > best_drop:
            best, best_drop = f.name, drop
    return best


__all__ = ["COUNTERS", "dit_num_params", "estimate_num_params", "largest_size_field", "uae_num_params"]
