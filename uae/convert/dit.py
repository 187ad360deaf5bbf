"""The released DiT-DH generators (RAE's ``stage2_model.pt``, the authors' ``stage_2.pt``) as uae models.

Followed: ``src/stage2/models/DDT.py`` (``DiTwDDTHead``), ``src/stage2/models/model_utils.py`` and
``src/utils/model_utils.py`` (``instantiate_from_config``, the checkpoint loader) of bytetriper/RAE
(``main``, ``a4d18c4``) and WeichenFan/UAE (``main``, ``3c2fde4``), which share the key names.

Files: both loaders ``torch.load`` the file and use its ``"ema"`` entry when there is one, else the
dict itself as the state dict (a dict with ``"model"`` but no ``"ema"`` is refused by them). Their
training script saves ``{"step", "epoch", "model", "ema", "optimizer", "scheduler"}``. uae reads the
file with ``torch.load(weights_only=True)`` and takes ``entry`` (``"ema"`` by default, like theirs;
``"model"`` on request; a bare state dict as is). Whether the released files are wrapped is not
confirmed (the Hub files were not read here); both forms load.

Key map (``N`` trunk blocks; ``blocks.{N + j}`` is head block ``j``):

=================================================  ==============================================
original                                           uae (:class:`~uae.models.dit.DiTDH`)
=================================================  ==============================================
``x_embedder.proj.*`` / ``s_embedder.proj.*``      ``x_embed.*`` / ``s_embed.*``
``s_projector.*`` (when the widths differ)         ``s_proj.*``
``t_embedder.W``                                   ``t_embed.freqs``
``t_embedder.mlp.0.*`` / ``mlp.2.*``               ``t_embed.fc1.*`` / ``fc2.*``
``y_embedder.embedding_table.weight``              ``y_embed.weight``
``pos_embed``                                      ``pos_embed`` (taken from the file)
``blocks.i.norm1.weight`` / ``norm2.weight``       ``trunk.i.norm1.weight`` / ``norm2.weight``
``blocks.i.attn.qkv.*`` / ``attn.proj.*``          ``trunk.i.attn.qkv.*`` / ``attn.proj.*``
``blocks.i.attn.{q,k}_norm.*``                     ``trunk.i.attn.{q,k}_norm.*``
``blocks.i.mlp.w12.*`` / ``mlp.w3.*``              ``trunk.i.mlp.fc_in.*`` / ``mlp.fc_out.*``
``blocks.i.mlp.fc1.*`` / ``mlp.fc2.*`` (GELU)      ``trunk.i.mlp.fc1.*`` / ``mlp.fc2.*``
``blocks.i.adaLN_modulation.1.*``                  ``trunk.i.modulation.*``
``final_layer.norm_final.weight``                  ``final.norm.weight``
``final_layer.adaLN_modulation.1.*``               ``final.modulation.*``
``final_layer.linear.*``                           ``final.linear.*``
``{enc,dec}_feat_rope.freqs_{cos,sin}``            checked against uae's tables, not stored
=================================================  ==============================================

Every source key is used once, every uae key filled, shapes checked; anything else is a
:class:`uae.errors.UAELoadError` naming the keys.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

import torch

from uae.convert.common import check_release_call
from uae.errors import (
    ConfigError,
    DamagedFileError,
    InputError,
    MissingFileError,
    UAEError,
    UAELoadError,
    UnsafeFileError,
)
from uae.files import read_torch_dict, read_yaml_mapping
from uae.layers.rope import rope_table
from uae.models.dit import DiTDH
from uae.models.dit_config import DiTDHConfig
from uae.models.registry import get_config, get_entry

#: Largest difference allowed between a stored RoPE table and uae's (both are computed in float32).
ROPE_TOLERANCE = 1e-5
#: Checkpoint entries (``entry="auto"`` takes the first present, as the originals' loader does).
ENTRIES = ("ema", "model")
#: What a file of each release layout is called (for messages).
LAYOUTS = {"rae": "RAE stage2_model.pt", "authors": "authors' stage_2.pt"}

_BLOCK_MAP = {
    "norm1.": "norm1.",
    "norm2.": "norm2.",
    "attn.qkv.": "attn.qkv.",
    "attn.proj.": "attn.proj.",
    "attn.q_norm.": "attn.q_norm.",
    "attn.k_norm.": "attn.k_norm.",
    "mlp.fc_in.": "mlp.w12.",
    "mlp.fc_out.": "mlp.w3.",
    "mlp.fc1.": "mlp.fc1.",
    "mlp.fc2.": "mlp.fc2.",
    "modulation.": "adaLN_modulation.1.",
}
_TOP_MAP = {
    "x_embed.": "x_embedder.proj.",
    "s_embed.": "s_embedder.proj.",
    "s_proj.": "s_projector.",
    "t_embed.freqs": "t_embedder.W",
    "t_embed.fc1.": "t_embedder.mlp.0.",
    "t_embed.fc2.": "t_embedder.mlp.2.",
    "y_embed.weight": "y_embedder.embedding_table.weight",
    "pos_embed": "pos_embed",
    "final.norm.": "final_layer.norm_final.",
    "final.modulation.": "final_layer.adaLN_modulation.1.",
    "final.linear.": "final_layer.linear.",
}
_ROPE_KEYS = {
    "trunk": ("enc_feat_rope.freqs_cos", "enc_feat_rope.freqs_sin"),
    "head": ("dec_feat_rope.freqs_cos", "dec_feat_rope.freqs_sin"),
}


def original_key(key: str, depth: int) -> str:
    """The original name of a uae :class:`~uae.models.dit.DiTDH` state-dict key.

    Args:
        key: A uae key, e.g. ``"head.0.mlp.fc_in.weight"``.
        depth: Trunk depth (head block ``j`` is the original's ``blocks.{depth + j}``).

    Raises:
        KeyError: A key with no original counterpart.
    """
    m = re.match(r"(trunk|head)\.(\d+)\.(.*)$", key)
    if m:
        part, index, rest = m.group(1), int(m.group(2)), m.group(3)
        block = index if part == "trunk" else depth + index
        for ours, theirs in _BLOCK_MAP.items():
            if rest.startswith(ours):
                return f"blocks.{block}.{theirs}{rest[len(ours) :]}"
        raise KeyError(key)
    for ours, theirs in _TOP_MAP.items():
        if key == ours or (ours.endswith(".") and key.startswith(ours)):
            return theirs + key[len(ours) :]
    raise KeyError(key)


def _names(keys: list[str], limit: int = 12) -> str:
    shown = ", ".join(keys[:limit])
    return f"{shown}, ... ({len(keys)} in all)" if len(keys) > limit else shown


def convert_dit_state(
    state: Mapping[str, torch.Tensor], config: DiTDHConfig, *, what: str = "DiT-DH checkpoint"
) -> dict[str, torch.Tensor]:
    """Rename an original ``DiTwDDTHead`` state dict to uae's keys, strictly.

    Args:
        state: The original state dict (a uniform ``module.`` prefix of DDP is accepted).
        config: The architecture the weights are for.
        what: What the state is, for messages.

    Returns:
        uae's state dict (float32; the source's tensors themselves when they are float32; RoPE tables
        dropped after the check).

    Raises:
        UAELoadError: Missing, unexpected or mis-shaped keys, non-float weights, or stored RoPE tables that
            differ from the config's (wrong ``rope`` mode, heads or grid); each message names the keys.
    """
    src = dict(state)
    if src and all(k.startswith("module.") for k in src):
        src = {k[len("module.") :]: v for k, v in src.items()}
    bad_type = sorted(k for k, v in src.items() if not isinstance(v, torch.Tensor))
    if bad_type:
        raise UAELoadError(f"{what}: entries that are not tensors: {_names(bad_type)}")
    with torch.device("meta"):  # names and shapes only
        own = DiTDH(config).state_dict()
    out: dict[str, torch.Tensor] = {}
    missing: list[str] = []
    shapes: list[str] = []
    for key, ref in own.items():
        theirs = original_key(key, config.depth)
        if theirs not in src:
            missing.append(theirs)
            continue
        value = src.pop(theirs)
        if tuple(value.shape) != tuple(ref.shape):
            shapes.append(f"{theirs} {tuple(value.shape)} (expected {tuple(ref.shape)})")
        elif not value.is_floating_point():
            shapes.append(f"{theirs} has dtype {value.dtype} (expected floating point)")
        else:
            out[key] = value.detach().to(torch.float32)  # no copy when already float32
    rope_errors: list[str] = []
    for part, width, heads in (
        ("trunk", config.hidden_size, config.num_heads),
        ("head", config.head_hidden_size, config.head_num_heads),
    ):
        cos, sin = rope_table(width // heads, config.token_grid, config.rope, config.rope_theta)
        for key, table in zip(_ROPE_KEYS[part], (cos, sin)):
            if key not in src:
                missing.append(key)
                continue
            stored = src.pop(key)
            if tuple(stored.shape) != tuple(table.shape):
                rope_errors.append(f"{key} {tuple(stored.shape)} (expected {tuple(table.shape)})")
            elif float((stored.float() - table).abs().max()) > ROPE_TOLERANCE:
                rope_errors.append(f"{key} differs from the {config.rope} RoPE table of the config")
    problems = []
    if missing:
        problems.append(f"missing key(s) {_names(missing)}")
    if src:
        problems.append(f"unexpected key(s) {_names(sorted(src))}")
    if shapes:
        problems.append(f"mis-shaped weight(s) {_names(shapes)}")
    if rope_errors:
        problems.append(f"RoPE table(s) {_names(rope_errors)} (check rope, heads and input_size)")
    if problems:
        raise UAELoadError(f"{what} does not match the DiT-DH config {config.name!r}: " + "; ".join(problems))
    return out


def unwrap_checkpoint(
    obj: Mapping[str, Any], entry: str = "auto", *, what: str = "DiT-DH checkpoint"
) -> dict[str, torch.Tensor]:
    """The state dict inside a released or training checkpoint.

    Args:
        obj: What ``torch.load`` returned.
        entry: ``"auto"`` (``"ema"`` if present, else a bare state dict, as the originals load),
            ``"ema"``, ``"model"`` (the non-EMA weights of a training checkpoint) or ``"none"`` (the dict is
            the state dict).
        what: What the file is, for messages.

    Raises:
        UAELoadError: The entry is absent, or a training checkpoint without ``"ema"`` under ``"auto"``.
        InputError: An unknown ``entry``.
    """
    if entry not in ("auto", "none", *ENTRIES):
        raise InputError(f"entry must be 'auto', 'none', 'ema' or 'model', got {entry!r}", param="entry")
    wrapped = [k for k in ENTRIES if isinstance(obj.get(k), Mapping)]
    if entry == "none" or (entry == "auto" and not wrapped):
        return dict(obj)
    if entry == "auto":
        if "ema" not in wrapped:
            raise UAELoadError(
                f"{what} has a 'model' entry but no 'ema' entry (the originals refuse it too); "
                "pass entry='model' to load the non-EMA weights",
                param="entry",
            )
        entry = "ema"
    if entry not in wrapped:
        raise UAELoadError(f"{what} has no {entry!r} entry (entries: {sorted(obj)})", param="entry")
    return dict(obj[entry])


def read_dit_checkpoint(
    path: str | os.PathLike, entry: str = "auto", *, layout: str = "rae"
) -> dict[str, torch.Tensor]:
    """Read a released generator file with ``torch.load(weights_only=True)`` and unwrap it.

    Args:
        path: ``stage2_model.pt`` (RAE) or ``stage_2.pt`` (the authors).
        entry: See :func:`unwrap_checkpoint`.
        layout: ``"rae"`` or ``"authors"`` (only for messages).

    Raises:
        MissingFileError: No such file.
        UnsafeFileError: A pickle that ``weights_only=True`` refuses.
        DamagedFileError: Truncated, corrupt or not a dict.
        UAELoadError: The entry is absent.
    """
    what = f"{LAYOUTS.get(layout, 'DiT-DH checkpoint')} {path}"
    try:
        obj = read_torch_dict(path, what=LAYOUTS.get(layout, "DiT-DH checkpoint"))
    except UAEError:
        raise
    except FileNotFoundError as e:
        raise MissingFileError(str(e), param="path") from e
    except ValueError as e:  # the reader's one line; the cause tells a refused pickle from a broken file
        kind = UnsafeFileError if "Unsupported global" in str(e.__cause__) else DamagedFileError
        raise kind(str(e), param="path") from e
    return unwrap_checkpoint(obj, entry, what=what)


def dit_from_original(
    state: Mapping[str, torch.Tensor],
    config: DiTDHConfig,
    *,
    what: str = "DiT-DH checkpoint",
    reuse_source: bool = False,
) -> DiTDH:
    """Build a :class:`~uae.models.dit.DiTDH` (eval mode) from an original state dict, strictly; with
    ``reuse_source`` it takes ``state``'s tensors themselves (read for it, used by nobody else), else copies."""
    return DiTDH.from_state_dict(
        config, convert_dit_state(state, config, what=what), source=what, copy=not reuse_source
    )


def load_original_dit(
    path: str | os.PathLike, config: DiTDHConfig, *, entry: str = "auto", layout: str = "rae"
) -> DiTDH:
    """Read, convert and build a released generator (eval mode).

    Args:
        path: ``stage2_model.pt`` (RAE) or ``stage_2.pt`` (the authors).
        config: Its architecture (e.g. :func:`uae.models.dit_config.dit_dh_xl`, or
            :func:`config_from_original_params` of the release's YAML).
        entry: See :func:`unwrap_checkpoint`.
        layout: ``"rae"`` or ``"authors"`` (only for messages).

    Raises:
        MissingFileError, UnsafeFileError, DamagedFileError: The file cannot be read.
        UAELoadError: Entry, keys, shapes or RoPE tables do not match.
    """
    state = read_dit_checkpoint(path, entry, layout=layout)
    what = f"{LAYOUTS.get(layout, 'DiT-DH checkpoint')} {path}"
    return dit_from_original(state, config, what=what, reuse_source=True)  # read here, used by nobody else


#: ``stage_2.params`` keys of the originals' YAML -> handled by :func:`config_from_original_params`.
ORIGINAL_PARAMS = (
    "input_size",
    "patch_size",
    "in_channels",
    "hidden_size",
    "depth",
    "num_heads",
    "mlp_ratio",
    "class_dropout_prob",
    "num_classes",
    "use_qknorm",
    "use_swiglu",
    "use_rope",
    "use_rmsnorm",
    "wo_shift",
    "use_pos_embed",
    "rope_mode",
)


def _pair(value: Any, name: str) -> tuple[Any, Any]:
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise ConfigError(f"stage_2.params.{name} must be one value or two, got {value!r}", param=name)
        return value[0], value[1]
    return value, value


def config_from_original_params(params: Mapping[str, Any], *, name: str = "converted_dit") -> DiTDHConfig:
    """The uae config of a release's ``stage_2.params`` (``DiTwDDTHead`` keyword arguments).

    Args:
        params: E.g. ``{"input_size": 16, "patch_size": 1, "in_channels": 768, "hidden_size": [1152, 2048],
            "depth": [28, 2], "num_heads": [16, 16], ...}`` (defaults as in ``DiTwDDTHead``).
        name: ``config.name``.

    Raises:
        ConfigError: Unknown keys, or options the original code cannot run (``wo_shift: true`` fails
            in its modulation, ``use_rope: false`` in its forward, patch sizes other than 1 in its patch
            embedding, different patch sizes for trunk and head).
    """
    unknown = sorted(set(params) - set(ORIGINAL_PARAMS))
    if unknown:
        raise ConfigError(
            f"unknown stage_2.params key(s) {unknown}; expected some of {list(ORIGINAL_PARAMS)}"
        )
    p = {
        "input_size": 1,
        "patch_size": 1,
        "in_channels": 768,
        "hidden_size": [1152, 2048],
        "depth": [28, 2],
        "num_heads": [16, 16],
        "mlp_ratio": 4.0,
        "class_dropout_prob": 0.1,
        "num_classes": 1000,
        "use_qknorm": False,
        "use_swiglu": True,
        "use_rope": True,
        "use_rmsnorm": True,
        "wo_shift": False,
        "use_pos_embed": True,
        "rope_mode": "2d",
        **params,
    }
    if p["wo_shift"]:
        raise ConfigError(
            "wo_shift: true is not supported (the original code cannot run it)", param="wo_shift"
        )
    if not p["use_rope"]:
        raise ConfigError(
            "use_rope: false is not supported (the original code cannot run it)", param="use_rope"
        )
    patch = _pair(p["patch_size"], "patch_size")
    if patch != (1, 1):
        raise ConfigError(
            f"patch_size {p['patch_size']!r}: only 1 runs in the original code (its patch embedding expects "
            "C*p*p input channels)",
            param="patch_size",
        )
    hidden, head_hidden = _pair(p["hidden_size"], "hidden_size")
    depth, head_depth = _pair(p["depth"], "depth")
    heads, head_heads = _pair(p["num_heads"], "num_heads")
    rows, cols = _pair(p["input_size"], "input_size")
    return DiTDHConfig(
        name=name,
        in_channels=p["in_channels"],
        input_size=(rows, cols),
        patch_size=1,
        hidden_size=hidden,
        depth=depth,
        num_heads=heads,
        head_hidden_size=head_hidden,
        head_depth=head_depth,
        head_num_heads=head_heads,
        mlp_ratio=float(p["mlp_ratio"]),
        num_classes=p["num_classes"],
        class_dropout_prob=float(p["class_dropout_prob"]),
        mlp="swiglu" if p["use_swiglu"] else "gelu",
        norm="rmsnorm" if p["use_rmsnorm"] else "layernorm",
        qk_norm=bool(p["use_qknorm"]),
        rope=str(p["rope_mode"]).lower(),
        pos_embed="sincos" if p["use_pos_embed"] else "none",
    )


# ---------------------------------------------------------------------------------------------- release format
#: File roles of the ``"dit"`` release format (:mod:`uae.convert.release`) -> required? ``checkpoint``:
#: ``stage2_model.pt`` / ``stage_2.pt``; ``config``: the release's sampling YAML (its ``stage_2.params``).
RELEASE_FILES: dict[str, bool] = {"checkpoint": True, "config": False}
#: Part of the converted-cache key: bump it whenever a converted generator's tensors or config change.
CONVERTER_VERSION = "1"
#: What was compared with the original code (model cards).
CONVERSION_CHECK = (
    "Compared with the original DiTwDDTHead code of bytetriper/RAE (main, a4d18c4) and WeichenFan/UAE (main, "
    "3c2fde4) on scaled-down generators of both release layouts with every tensor re-drawn at random (CPU, "
    "float32): forward passes, CFG and autoguidance outputs, and whole ODE/SDE samples agree within 1e-5 "
    "(measured: bit-identical), decoded images within 1e-5 (tests/test_generation_*.py)."
)
#: Sections of a release YAML that hold a ``DiTwDDTHead``'s ``params``.
CONFIG_SECTIONS = ("stage_2", "guidance_model")


def read_release_params(path: str | os.PathLike, section: str = "stage_2") -> dict[str, Any]:
    """``stage_2.params`` (or ``guidance.guidance_model.params``) of a release's sampling or training YAML.

    Raises:
        InputError: Unknown ``section`` (``param="section"``), or the YAML has no such block.
        MissingFileError, DamagedFileError: The file is missing or not YAML.
    """
    if section not in CONFIG_SECTIONS:
        raise InputError(f"section must be one of {CONFIG_SECTIONS}, got {section!r}", param="section")
    raw = read_yaml_mapping(path, "generator config")
    block = raw.get("stage_2") if section == "stage_2" else (raw.get("guidance") or {}).get("guidance_model")
    params = block.get("params") if isinstance(block, Mapping) else None
    if not isinstance(params, Mapping):
        where = "stage_2.params" if section == "stage_2" else "guidance.guidance_model.params"
        raise InputError(f"{path} has no {where} block (not a release's sampling or training config)")
    return dict(params)


def load_release(files: Mapping[str, str | os.PathLike], *, name: str | None = None, **options: Any) -> DiTDH:
    """Build a released generator (eval mode) from local files, strictly (the ``"dit"`` release format).

    The architecture comes from, in this order: ``options["params"]`` (a ``stage_2.params`` mapping), the
    ``"config"`` file (the release YAML; ``options["section"]`` picks ``"stage_2"`` or
    ``"guidance_model"``), or ``name`` as a registered generator architecture (``"dit_dh_xl"``).

    Args:
        files: Role -> local path (:data:`RELEASE_FILES`).
        name: ``config.name`` of the result; a registered generator architecture when no config is given.
        **options: ``entry`` (:func:`unwrap_checkpoint`), ``layout`` (``"rae"`` / ``"authors"``, for
            messages), ``params``, ``section``.

    Raises:
        InputError: Unknown roles or options; no architecture can be determined (``param="config"``).
        MissingFileError, UnsafeFileError, DamagedFileError: A file cannot be read.
        UAELoadError: The weights do not match the architecture.
    """
    allowed = {"entry", "layout", "params", "section"}
    check_release_call("DiT-DH release", files, RELEASE_FILES, options, allowed)
    entry = options.get("entry") or "auto"
    layout = options.get("layout", "rae")
    if options.get("params") is not None:
        config = config_from_original_params(dict(options["params"]), name=name or "converted_dit")
    elif files.get("config"):
        params = read_release_params(files["config"], options.get("section", "stage_2"))
        config = config_from_original_params(params, name=name or "converted_dit")
    elif name is not None and get_entry(name).family == "generator":
        config = get_config(name)
    else:
        raise InputError(
            "a DiT-DH checkpoint does not say its architecture: give the release's config (its YAML), "
            "params (stage_2.params) or the name of a registered generator (uae models)",
            param="config",
        )
    return load_original_dit(files["checkpoint"], config, entry=entry, layout=layout)


__all__ = [
    "CONFIG_SECTIONS",
    "CONVERSION_CHECK",
    "CONVERTER_VERSION",
    "RELEASE_FILES",
    "load_release",
    "read_release_params",
    "ENTRIES",
    "LAYOUTS",
    "ORIGINAL_PARAMS",
    "ROPE_TOLERANCE",
    "config_from_original_params",
    "convert_dit_state",
    "dit_from_original",
    "load_original_dit",
    "original_key",
    "read_dit_checkpoint",
    "unwrap_checkpoint",
]
