"""``uae publish`` as a function: convert a release (or load uae weights), write a Hub folder with a card, push it.

The folder holds ``model.safetensors`` + ``config.json`` (``save_pretrained`` layout) and a
``README.md`` whose metadata (:mod:`uae.models.card`, checked with huggingface_hub's ``ModelCard``) names
the license, ``library_name: uae``, the pipeline tag, true tags, the ``base_model`` (a converted
release's repo), the training data and a ``model-index``. A converted release's text states the source,
its license, the conversion check, and the metrics its authors report (quoted as theirs, with their
source in ``model-index``). Weights uae trained (``source="uae"``, e.g. ``uae_demo.embedded``) keep
their own card (training, data, the metrics uae measured) with the publishing check added, and the
card's other files (its pictures, ``metrics.json``). ``dry_run=True`` stops after writing the folder.
The command is :mod:`uae.commands.publish`.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import HfApi, ModelCard

from uae.convert.release import fetch_release_files, get_converter, load_release
from uae.errors import DamagedFileError, InputError
from uae.models.card import (
    CARD_TAGS,
    IMAGENET_1K,
    PAPER_URL,
    PIPELINE_TAG,
    card_data,
    check_card,
    eval_results,
    repo_id_problem,
)
from uae.models.hub import CONFIG_NAME, PROVENANCE_NAME, WEIGHTS_NAME, HubOptions
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
#: What each release format's weights were trained on (the authors' and RAE's papers: ImageNet-1K).
RELEASE_DATASETS = {"authors_v1": [IMAGENET_1K], "authors_v2": [IMAGENET_1K], "rae": [IMAGENET_1K]}
_NO_CHECK = (
    "The converter is strict (every source tensor consumed, every uae tensor filled, shapes and floating "
    "dtypes checked); it records no comparison with the original code's outputs."
)


def check_repo_id(repo_id: str, param: str = "repo_id") -> str:
    """Check a Hub model repo id for publishing: ``org/name`` that huggingface_hub's validator accepts.

    Raises:
        InputError: Not a string of the form ``org/name`` (one slash), or characters the Hub refuses
            (spaces, newlines, ``--``, ``..``, a trailing ``.git``, more than 96 characters).
    """
    if not isinstance(repo_id, str) or repo_id.count("/") != 1:
        raise InputError(f"{param} must be 'org/name', got {repo_id!r}", param=param)
    why = repo_id_problem(repo_id)
    if why is not None:
        raise InputError(f"{param} {repo_id!r} is not a valid Hub repo id: {why}", param=param)
    return repo_id


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


def _reporter(source: str) -> str:
    """The ``model-index`` source name of a release's quoted metrics: whose numbers they are."""
    who = {"authors_v1": "The UAE authors", "authors_v2": "The UAE authors", "rae": "The RAE authors"}
    return f"{who.get(source, f'The {source} release authors')} (reported, not measured by uae)"


def _source_url(cfg: PretrainedCfg) -> str:
    """Where a release's quoted metrics are published: the repository or paper its ``metrics_source`` names."""
    if m := re.search(r"github\.com/[\w.-]+/[\w.-]+", cfg.metrics_source):
        return "https://" + m.group(0)
    if m := re.search(r"arXiv[ :]*(\d{4}\.\d{4,5})", cfg.metrics_source, re.I):
        return f"https://arxiv.org/abs/{m.group(1)}"
    return f"https://huggingface.co/{cfg.hf_hub_id}" if cfg.hf_hub_id else PAPER_URL


def measured_results(folder: str | Path) -> list:
    """``model-index`` entries of the metrics uae measured for weights it trained (``metrics.json`` in their
    folder, as ``scripts/make_demo_data.py card`` writes it: ``heldout.uae.{psnr,ssim}``); ``[]`` if none."""
    path = Path(folder) / "metrics.json"
    try:
        data = json.loads(path.read_text())
        own = {k: float(v) for k, v in data["heldout"]["uae"].items() if k in ("psnr", "ssim")}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return []
    n = data.get("num_heldout_crops")
    name = f"held-out photo crops ({n}; see Evaluation)" if n else "held-out photo crops (see Evaluation)"
    return eval_results({f"heldout.{k}": v for k, v in own.items()}, dataset=("imagefolder", name, None))


def native_card(
    model,
    *,
    repo_id: str,
    cfg: PretrainedCfg,
    license_id: str,
    folder: Path | None,
    roundtrip: Mapping[str, Any],
) -> str:
    """The README.md of weights uae trained: their own card (metadata, training, evaluation) + the publishing check.

    Args:
        model: The loaded model.
        repo_id: Target Hub repo (for the usage line).
        cfg: The weights' entry.
        license_id: Licence id.
        folder: The weights' local folder (its ``README.md`` and ``metrics.json``), or ``None``.
        roundtrip: :func:`roundtrip_check`'s result.
    """
    own = folder / "README.md" if folder is not None else None
    card = ModelCard(own.read_text()) if own is not None and own.is_file() else None
    if card is None:
        card = model.generate_model_card(repo_id=repo_id)
    data = card.data
    results = data.eval_results or (measured_results(folder) if folder is not None else [])
    tags = [t for t in (data.tags or []) if t not in CARD_TAGS]
    meta = card_data(
        model.config,
        license=license_id,
        base_model=data.base_model,
        datasets=data.datasets,
        results=results,
        tags=tags,
        mixin_tags=False,
    )
    meta.pipeline_tag = data.pipeline_tag or PIPELINE_TAG
    body = card.text.strip()
    body += (
        f"\n\n## Publishing\n\nPublished with `uae publish {cfg.name}`: weights trained by uae, no conversion. "
        f'Load them with `uae.UAE.from_pretrained("{repo_id}")`. The folder was reloaded with '
        f"`uae.UAE.from_pretrained`; {roundtrip['identical_tensors']}/{roundtrip['tensors']} tensors are "
        f"bit-identical to the published model and its reconstructions of {roundtrip['images']} seeded random "
        f"{roundtrip['size']} px images differ by max |diff| = {roundtrip['max_abs_diff']:g} (tolerance 0).\n"
    )
    text = f"---\n{meta.to_yaml()}\n---\n\n{body}"
    check_card(text)
    return text


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
    """The README.md of a published converted release (Hub metadata + text), checked with :func:`check_card`."""
    c = model.config
    metrics = dict(cfg.paper_metrics) if cfg else {}
    results = (
        eval_results(metrics, source_name=_reporter(source), source_url=_source_url(cfg))
        if cfg and metrics
        else []
    )
    data = card_data(
        c,
        license=license_id,
        encoder_pretrained=True,  # a release's encoder is its family's pretrained model (DINOv2, CLIP, ...)
        base_model=cfg.hf_hub_id if cfg else None,
        datasets=RELEASE_DATASETS.get(source),
        results=results,
        tags=["converted", source.replace("_", "-")],
        mixin_tags=False,
    )
    files = provenance.get("resolved_files") or {}
    file_rows = "\n".join(
        f"| {role} | `{p.get('repo') or 'local file'}` | `{p.get('filename')}` | `{p.get('commit') or p.get('revision') or '-'}` |"
        for role, p in files.items()
    )
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
    text = "\n".join(lines)
    check_card(text)
    return text


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
    check_repo_id(repo_id)
    folder = Path(out) if out else Path("publish") / repo_id.replace("/", "--")
    if folder.exists() and any(folder.iterdir()):
        raise InputError(f"output folder {folder} is not empty")
    provenance: dict[str, Any] = {}
    native_dir: Path | None = None
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

            location = native_location(cfg)
            native_dir = Path(location) if Path(location).is_dir() else None
            model = UAE.from_pretrained(location, revision=revision or cfg.revision)
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
    if source == NATIVE_SOURCE and cfg is not None and not release_format:
        card = native_card(
            model, repo_id=repo_id, cfg=cfg, license_id=license_id, folder=native_dir, roundtrip=result
        )
        for extra in sorted(native_dir.iterdir()) if native_dir is not None else []:
            if extra.is_file() and extra.name not in (CONFIG_NAME, WEIGHTS_NAME, "README.md"):
                shutil.copy2(extra, folder / extra.name)  # the card's pictures, metrics.json
    else:
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
