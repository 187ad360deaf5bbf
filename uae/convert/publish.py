"""``uae publish`` as a function: convert a release (or load uae weights), write a Hub folder with a card, push it.

The folder holds ``model.safetensors`` + ``config.json`` (``save_pretrained`` layout) and a
``README.md`` whose metadata names the license, ``library_name: uae`` and tags, and whose text states
the source, its license, the conversion check, and the metrics the source's authors report (quoted as
theirs). ``dry_run=True`` stops after writing the folder. The command is :mod:`uae.commands.publish`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import HfApi, ModelCardData

from uae.convert.release import fetch_release_files, get_converter, load_release
from uae.errors import DamagedFileError, InputError
from uae.models.hub import PROVENANCE_NAME, REPO_ID, HubOptions
from uae.models.pretrained import (
    NATIVE_SOURCE,
    PretrainedCfg,
    get_pretrained_cfg,
    native_location,
    pretrained_cfgs,
)

logger = logging.getLogger(__name__)

#: Fallback licence per release format when publishing local files without ``--like``/``--license``.
DEFAULT_LICENSES = {"authors_v1": "apache-2.0", "authors_v2": "apache-2.0", "rae": "mit", "uae": "apache-2.0"}
_NO_CHECK = (
    "The converter is strict (every source tensor consumed, every uae tensor filled, shapes and floating "
    "dtypes checked); it records no comparison with the original code's outputs."
)


def roundtrip_check(model: torch.nn.Module, folder: Path, n_images: int = 2) -> dict[str, Any]:
    """Reload ``folder`` and compare it with ``model``: state dict and outputs on seeded random images.

    Returns:
        ``{"tensors", "identical_tensors", "max_abs_diff", "images", "size"}``.

    Raises:
        DamagedFileError: The written folder does not reproduce the model exactly.
    """
    from uae.models.uae import UAE

    loaded = UAE.from_pretrained(folder)
    sd0, sd1 = model.state_dict(), loaded.state_dict()
    same = sum(torch.equal(sd0[k], sd1[k]) for k in sd0)
    size = model.config.img_size
    x = torch.rand(n_images, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        diff = float((model(x).sample - loaded(x).sample).abs().max())
    result = {
        "tensors": len(sd0),
        "identical_tensors": same,
        "max_abs_diff": diff,
        "images": n_images,
        "size": size,
    }
    if same != len(sd0) or diff != 0.0:
        raise DamagedFileError(
            f"the written folder {folder} does not reproduce the converted model: {result}"
        )
    return result


def _metrics_table(metrics: Mapping[str, float]) -> str:
    if not metrics:
        return "No reconstruction metrics are quoted for these weights."
    rows = ["| benchmark | metric | value |", "|---|---|---|"]
    for key, value in metrics.items():
        bench, _, metric = key.rpartition(".")
        rows.append(f"| {bench or '-'} | {metric} | {value:g} |")
    return "\n".join(rows)


def model_card(
    model,
    *,
    repo_id: str,
    source: str,
    license_id: str,
    cfg: PretrainedCfg | None,
    provenance: Mapping[str, Any],
    check: str,
    roundtrip: Mapping[str, Any],
) -> str:
    """The README.md of a published folder (Hub metadata + text)."""
    c = model.config
    data = ModelCardData(
        license=license_id,
        library_name="uae",
        tags=["uae", "image-tokenizer", "autoencoder", "converted", source.replace("_", "-")],
    )
    files = provenance.get("resolved_files") or {}
    file_rows = "\n".join(
        f"| {role} | `{p.get('repo') or 'local file'}` | `{p.get('filename')}` | `{p.get('commit') or p.get('revision') or '-'}` |"
        for role, p in files.items()
    )
    metrics = dict(cfg.paper_metrics) if cfg else {}
    metrics_src = cfg.metrics_source if cfg and cfg.metrics_source else ""
    lines = [
        "---",
        data.to_yaml(),
        "---",
        "",
        f"# {c.name} ({source} release, converted to uae)",
        "",
        f"These are **not weights trained by uae**: they are the `{source}` release"
        + (f" `{cfg.name}`" if cfg else "")
        + " converted into the `uae` package's layout (Unified Autoencoding, https://arxiv.org/abs/2512.19693).",
        "",
        "```python",
        "import uae",
        f'model = uae.UAE.from_pretrained("{repo_id}")',
        f"out = model(images)  # (B, 3, {c.img_size}, {c.img_size}) in [0, 1] -> out.sample (B, 3, {c.output_size}, {c.output_size})",
        "```",
        "",
        "## Source",
        "",
        "| role | repo | file | commit / revision |",
        "|---|---|---|---|",
        file_rows or "| - | - | - | - |",
        "",
        f"Converter: `uae.convert.{source}` version `{provenance.get('converter_version', '-')}`. "
        f"Latent {'x'.join(map(str, c.latent_shape))} (C, h, w), K = {c.num_bands} bands "
        f"(`{c.band_transform}`, scheme `{c.band_scheme}`), {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters.",
        "",
        "## License",
        "",
        f"`{license_id}`." + (f" {cfg.license_note}" if cfg and cfg.license_note else ""),
        "",
        "## Conversion check",
        "",
        check or _NO_CHECK,
        "",
        f"Publishing check: the folder was reloaded with `uae.UAE.from_pretrained`; {roundtrip['identical_tensors']}"
        f"/{roundtrip['tensors']} tensors are bit-identical to the converted model and its reconstructions of "
        f"{roundtrip['images']} seeded random {roundtrip['size']} px images differ by max |diff| = "
        f"{roundtrip['max_abs_diff']:g} (tolerance 0).",
        "",
        "## Reported metrics (the authors' numbers, not measured by uae)",
        "",
        _metrics_table(metrics),
        "",
    ]
    if metrics_src:
        lines += [f"Source: {metrics_src}.", ""]
    if cfg and cfg.notes:
        lines += ["## Notes", "", cfg.notes, ""]
    return "\n".join(lines)


def publish(
    src: str,
    repo_id: str,
    *,
    release_format: str | None = None,
    files: Mapping[str, str] | None = None,
    like: str | None = None,
    license_id: str | None = None,
    name: str | None = None,
    out: str | Path | None = None,
    dry_run: bool = False,
    private: bool = False,
    revision: str | None = None,
) -> Path:
    """Build the Hub folder of a release (tag or local files) and push it unless ``dry_run``.

    Args:
        src: A pretrained name (``arch.tag`` or ``arch``) or, with ``release_format``, the release's main
            local file (its first required role).
        repo_id: Target Hub repo ``org/name``.
        release_format: ``authors_v1`` / ``authors_v2`` / ``rae`` (or an alias) for local files.
        files: More local files, role -> path.
        like: A pretrained name whose license, metrics and notes describe these local files (and whose
            converter options apply to them, e.g. the encoder of an RAE decoder).
        license_id: Licence id for the card (default: the entry's, else the format's).
        name: ``config.name`` of the converted model.
        out: Output folder (default ``publish/<org>--<name>``).
        dry_run: Write the folder only.
        private: Create the Hub repo private.
        revision: Hub revision of the release (tags only).

    Returns:
        The folder written.

    Raises:
        InputError: ``repo_id`` is not ``org/name``, ``out`` is not empty, ``src`` names no weights, or the
            converter rejects the files (``param`` names the parameter where there is one).
        MissingFileError: A release file is missing, or not in the Hub cache while offline.
    """
    if not REPO_ID.match(repo_id):
        raise InputError(f"repo_id must be 'org/name', got {repo_id!r}", param="repo_id")
    folder = Path(out) if out else Path("publish") / repo_id.replace("/", "--")
    if folder.exists() and any(folder.iterdir()):
        raise InputError(f"output folder {folder} is not empty")
    provenance: dict[str, Any] = {}
    if release_format:
        conv = get_converter(release_format)
        paths = {conv.main_role: src, **(files or {})}
        cfg = get_pretrained_cfg(like) if like else None
        options = (
            dict(cfg.options) if cfg is not None and cfg.source == conv.source else {}
        )  # e.g. RAE's encoder
        model = load_release(
            release_format, paths, name=name or (cfg.architecture if cfg else None), **options
        )
        source = conv.source
        provenance = {
            "converter_version": conv.version,
            "resolved_files": {r: {"repo": None, "filename": Path(p).name} for r, p in paths.items()},
        }
        check = conv.check
    else:
        cfg = get_pretrained_cfg(src)
        if cfg is None:
            known = ", ".join(c.name for c in pretrained_cfgs())
            raise InputError(
                f"no pretrained weights named {src!r} (and no release_format given); known: {known}",
                param="release_format",
            )
        source = cfg.source
        if cfg.source == NATIVE_SOURCE:
            from uae.models.uae import UAE

            model = UAE.from_pretrained(native_location(cfg), revision=revision or cfg.revision)
            check = "Native uae weights: no conversion."
        else:
            conv = get_converter(cfg.source)
            paths, prov = fetch_release_files(cfg, HubOptions(revision=revision))
            model = load_release(cfg.source, paths, name=name or cfg.architecture, **dict(cfg.options))
            provenance = {"converter_version": conv.version, "resolved_files": prov}
            check = conv.check
    from uae.models.uae import UAE

    if not isinstance(model, UAE):  # a generator (release format "dit")
        raise InputError(
            f"src {src!r} is a generator: uae publish writes tokenizer cards; use its save_pretrained / "
            "push_to_hub (uae.models.dit.DiTDH)",
            param="src",
        )
    license_id = license_id or (cfg.license if cfg else "") or DEFAULT_LICENSES.get(source, "other")
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    result = roundtrip_check(model, folder)
    card = model_card(
        model,
        repo_id=repo_id,
        source=source,
        license_id=license_id,
        cfg=cfg,
        provenance=provenance,
        check=check,
        roundtrip=result,
    )
    (folder / "README.md").write_text(card)
    if provenance:
        record = {"source": source, "pretrained": cfg.to_dict() if cfg else None, **provenance}
        (folder / PROVENANCE_NAME).write_text(
            json.dumps(record, indent=2, sort_keys=True, default=str) + "\n"
        )
    if not dry_run:
        api = HfApi()
        api.create_repo(repo_id, private=private, exist_ok=True)
        api.upload_folder(repo_id=repo_id, folder_path=str(folder), commit_message=f"uae publish {src}")
    return folder
