"""The generators of the latent-diffusion stage in and out: the DiT-DH to train, the export written at the
end of ``fit`` (``save_pretrained`` + its :class:`~uae.generation.latent_space.LatentSpace`), and the export
of a Lightning checkpoint (``uae export``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from uae.errors import ConfigError, InputError
from uae.generation.latent_space import LatentSpace
from uae.models.dit import DiTDH
from uae.models.dit_config import DiTDHConfig

#: Checkpoint entries of the latent-diffusion stage.
CONFIG_KEY, SPACE_KEY = "uae_generator_config", "uae_latent_space"


def build_generator(
    model_name: str = "dit_dh_xl",
    model_overrides: dict[str, Any] | None = None,
    pretrained: str | None = None,
) -> DiTDH:
    """The DiT-DH to train: a registered architecture (with config overrides) or a trained generator."""
    from uae.factory import create_model, load_model

    if pretrained:
        model = load_model(pretrained, family="generator")
        if model_overrides:
            raise ConfigError("model_overrides cannot change a pretrained generator", param="model_overrides")
        return model  # type: ignore[return-value]
    model = create_model(model_name, **dict(model_overrides or {}))
    if not isinstance(model, DiTDH):
        raise ConfigError(
            f"{model_name!r} is not a generator (uae models: family generator)", param="model_name"
        )
    return model


def save_generator(model: DiTDH, directory: Path, space: LatentSpace | None, name: str | None = None) -> Path:
    """``save_pretrained`` of a trained generator, its name set, with its :class:`LatentSpace`.

    Args:
        model: The generator.
        directory: The export folder (created).
        space: The latent space it was trained in (decoding needs it); ``None``: none written.
        name: ``config.name``; default: the folder's (its parent's for ``.../export``).
    """
    from uae.training.export import name_from_dir

    name = name or name_from_dir(directory)
    if name:
        model.config = DiTDHConfig.from_dict({**model.config.to_dict(), "name": name})
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "README.md").unlink(missing_ok=True)  # save_pretrained keeps an existing card
    tokenizer = space.tokenizer if space is not None else None
    model.save_pretrained(directory, model_card_kwargs={"tokenizer": tokenizer} if tokenizer else None)
    if space is not None:
        space.save(directory)
    return directory


def generator_from_checkpoint(ckpt: dict[str, Any], *, ema: bool = True, source: str = "checkpoint") -> DiTDH:
    """The generator of a latent-diffusion checkpoint (``ema.module.*`` when ``ema`` and present, else ``model.*``).

    Raises:
        InputError: Not a latent-diffusion checkpoint.
    """
    if CONFIG_KEY not in ckpt or "state_dict" not in ckpt:
        raise InputError(
            f"{source} is not a latent-diffusion checkpoint (no {CONFIG_KEY!r})", param="ckpt_path"
        )
    state = ckpt["state_dict"]
    prefix = "ema.module." if ema and any(k.startswith("ema.module.") for k in state) else "model."
    model = DiTDH(DiTDHConfig.from_dict(ckpt[CONFIG_KEY]))
    model.load_state_dict(
        {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}, strict=True
    )
    return model.eval()


def export_training_checkpoint(
    ckpt_path: str | Path, out_dir: str | Path, *, ema: bool = True, name: str | None = None
) -> Path:
    """``uae export``: a checkpoint of any uae stage -> a ``save_pretrained`` folder (read once).

    A latent-diffusion checkpoint gives the generator and its latent space
    (:func:`generator_from_checkpoint`, :func:`save_generator`); a tokenizer stage's gives the
    :class:`uae.UAE` (:func:`uae.training.export.export_checkpoint`'s result).

    Args:
        ckpt_path: Lightning ``.ckpt`` written by ``uae fit``.
        out_dir: Output folder (created).
        ema: Export the EMA weights when the checkpoint has them.
        name: The exported model's name; ``None`` keeps the trained model's.
    """
    from uae.training.export import load_lightning_checkpoint, model_from_state_dict

    ckpt = load_lightning_checkpoint(ckpt_path)
    out = Path(out_dir)
    if CONFIG_KEY not in ckpt:
        if "uae_config" not in ckpt or "state_dict" not in ckpt:
            raise InputError(
                f"{ckpt_path} is not a uae training checkpoint (no 'uae_config')", param="ckpt_path"
            )
        model = model_from_state_dict(ckpt["uae_config"], ckpt["state_dict"], ema=ema, source=str(ckpt_path))
        if name:
            model.config = model.config.replace(name=name)
        model.save_pretrained(out)
        return out
    model = generator_from_checkpoint(ckpt, ema=ema, source=str(ckpt_path))
    saved = ckpt.get(SPACE_KEY)
    space = None
    if saved is not None:
        tensors = {k: saved[k] for k in ("mean", "std") if saved.get(k) is not None}
        space = LatentSpace.from_dict(saved, tensors)
    return save_generator(model, out, space, name or model.config.name)


__all__ = [
    "CONFIG_KEY",
    "SPACE_KEY",
    "build_generator",
    "export_training_checkpoint",
    "generator_from_checkpoint",
    "save_generator",
]
