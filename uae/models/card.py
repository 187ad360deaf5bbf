"""Model cards the Hub understands: the metadata of a uae card, built and checked with huggingface_hub.

Every card uae writes (``save_pretrained``, a training export, ``uae publish``) carries the same
metadata, built by :func:`card_data` as a :class:`huggingface_hub.ModelCardData`: ``library_name: uae``,
``license``, ``pipeline_tag``, tags that are true of these weights (the encoder family's tag, e.g.
``dinov2``, only when the encoder started from that family's pretrained weights), ``base_model`` (Hub
repo ids only: a converted release's repo, the model a fine-tune started from), ``datasets`` where
known, and ``model-index`` (:class:`huggingface_hub.EvalResult`): the metrics uae measured carry no
source (the Hub shows them as the publisher's own), the authors' numbers carry theirs
(:func:`eval_results`). :func:`check_card` parses a card back with :class:`huggingface_hub.ModelCard`
and refuses metadata the Hub would not read, and local paths.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from uae.errors import InputError

#: Tags true of every UAE tokenizer card.
CARD_TAGS: tuple[str, ...] = ("uae", "image-tokenizer", "autoencoder", "frequency-bands")
PAPER_URL = "https://arxiv.org/abs/2512.19693"

MODEL_CARD_TEMPLATE = """---
{{ card_data }}
---

# {{ model_name }}

A **Unified Autoencoding (UAE)** tokenizer from the `uae` package: one latent space that gives both
pixel-faithful reconstruction and semantic features ("The Prism Hypothesis: Harmonizing Semantic and
Pixel Representations via Unified Autoencoding", Fan, Diao, Wang, Lin, Liu; {{ paper_url }}).

| | |
|---|---|
| input | {{ img_size }}x{{ img_size }} RGB in [0, 1] |
| output | {{ output_size }}x{{ output_size }} RGB |
| latent | {{ latent_shape }} (C, h, w) |
| frequency bands K | {{ num_bands }} ({{ band_transform }}) |
| encoder | ViT {{ encoder_dim }}/{{ encoder_depth }} ({{ encoder_family }} architecture), patch {{ patch_size }}; initial weights: {{ encoder_init }} |
| decoder | ViT {{ decoder_dim }}/{{ decoder_depth }}, patch {{ decoder_patch_size }} |
| parameters | {{ num_params }} |
| uae version | {{ uae_version }} |

## Usage

```python
import uae
model = uae.UAE.from_pretrained("{{ repo_id }}")
out = model(images)            # images: (B, 3, {{ img_size }}, {{ img_size }}) in [0, 1]
out.sample, out.latent, out.bands
features = model.features(images, band=0)   # band-0 features for linear probes
```

## Training

{{ training | default("Not recorded in this card (a `uae fit` export records its run here; the recipes: `uae recipes`).", true) }}

## Evaluation

{{ evaluation | default("Not evaluated yet.", true) }}
"""
#: Keywords of :meth:`UAEHubMixin.generate_model_card` that are metadata (:func:`uae.models.card.card_data`).
CARD_DATA_KEYS = ("license", "encoder_pretrained", "base_model", "datasets", "results", "tags")


#: huggingface_hub's own tags for ``PyTorchModelHubMixin`` models (the Hub counts downloads by them).
MIXIN_TAGS: tuple[str, ...] = ("model_hub_mixin", "pytorch_model_hub_mixin")
#: The Hub task of a UAE: it encodes an image into a latent of features (and decodes it back).
PIPELINE_TAG = "image-feature-extraction"
#: Encoder family -> its tag, added when the encoder started from that family's pretrained weights.
FAMILY_TAGS = {"dinov2": "dinov2", "clip": "clip", "siglip2": "siglip2", "mae": "mae"}
#: Hub dataset id of ImageNet-1K (what the authors' and RAE's tokenizers are trained on).
IMAGENET_1K = "ILSVRC/imagenet-1k"

#: Metric-key benchmark (``"imagenet1k_val.psnr"`` -> ``"imagenet1k_val"``) -> (dataset id, name, split).
BENCHMARKS: dict[str, tuple[str, str, str | None]] = {
    "imagenet1k_val": (IMAGENET_1K, "ImageNet-1K", "validation"),
    "imagenet1k": (IMAGENET_1K, "ImageNet-1K", "validation"),
    "coco2017_val": ("detection-datasets/coco", "COCO 2017", "val"),
}
#: Metric name in uae's keys -> (model-index metric type, pretty name).
METRICS: dict[str, tuple[str, str]] = {
    "psnr": ("psnr", "PSNR (dB)"),
    "ssim": ("ssim", "SSIM"),
    "lpips": ("lpips", "LPIPS"),
    "rfid": ("fid", "rFID"),
    "rfid_50k": ("fid", "rFID-50k"),
    "linear_probe": ("accuracy", "Linear probe top-1 accuracy (%)"),
}
RECONSTRUCTION = ("image-to-image", "Image reconstruction")
LINEAR_PROBE = ("image-classification", "Linear probe on band-0 features")

#: An absolute local path in a card's text (``/a/b``, ``C:\\...``, ``~/...``); URLs and ``a/b`` are not matched.
LOCAL_PATH = re.compile(r"(?<![\w:/.~-])(?:/[\w.~-]+/[\w.~-]|[A-Za-z]:\\\w|~/\w)")


def repo_id_problem(repo_id: str) -> str | None:
    """Why the Hub refuses ``repo_id`` (huggingface_hub's validator, in one line), or ``None``.

    Spaces and control characters are refused first: older validators let a final newline through.
    """
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if any(c.isspace() or not c.isprintable() for c in repo_id):
        return "it contains spaces or control characters"
    try:
        validate_repo_id(repo_id)
    except HFValidationError as e:
        text = str(e).strip()
        why = text[: text.rfind(": '")] if ": '" in text else text  # the id again, maybe over two lines
        return why.splitlines()[0].strip() if why.strip() else "refused by huggingface_hub"
    return None


def hub_repo_ids(values: str | Iterable[str] | None) -> list[str]:
    """The Hub repo ids among ``values`` (``org/name`` that huggingface_hub accepts and no local path)."""
    items = [values] if isinstance(values, str) else list(values or [])
    out = []
    for v in items:
        if not isinstance(v, str) or v.count("/") != 1 or Path(v).expanduser().exists():
            continue
        if repo_id_problem(v) is None and v not in out:
            out.append(v)
    return out


def display_source(value: str | os.PathLike | None) -> str:
    """How a card names where weights came from: a Hub repo id or registered name as is, a local path by its
    last component only (``local folder `cats```): a card must not carry this machine's paths."""
    if value is None or str(value) == "":
        return ""
    text = str(value)
    if hub_repo_ids(text) or ("/" not in text and "\\" not in text and not Path(text).expanduser().exists()):
        return text
    path = Path(text).expanduser()
    kind = "local folder" if path.is_dir() else "local file"
    return f"{kind} {path.name or text}"


def eval_results(
    metrics: Mapping[str, float],
    *,
    source_name: str | None = None,
    source_url: str | None = None,
    dataset: tuple[str, str, str | None] | None = None,
) -> list[EvalResult]:
    """``model-index`` entries of metrics keyed ``"benchmark.metric"`` (``{"imagenet1k_val.psnr": 32.17}``).

    Args:
        metrics: Metric key -> value. Known benchmarks (:data:`BENCHMARKS`) and metrics (:data:`METRICS`) get
            their Hub ids; others are kept under their own names.
        source_name: Who reported the numbers when not uae (the Hub labels them as from that source); ``None``
            for what uae measured itself.
        source_url: Where they are reported (required with ``source_name``).
        dataset: ``(id, name, split)`` for every key instead of its benchmark's (e.g. ``("imagefolder",
            "held-out photo crops", None)``).

    Returns:
        One :class:`huggingface_hub.EvalResult` per metric, in order.

    Raises:
        InputError: ``source_name`` without ``source_url``.
    """
    if source_name and not source_url:
        raise InputError("eval results with a source_name need its source_url", param="source_url")
    out = []
    for key, value in metrics.items():
        bench, _, metric = key.rpartition(".")
        ds_type, ds_name, split = dataset or BENCHMARKS.get(
            bench, (bench or "unknown", bench or "unknown", None)
        )
        task_type, task_name = LINEAR_PROBE if metric == "linear_probe" else RECONSTRUCTION
        metric_type, metric_name = METRICS.get(metric, (metric, metric))
        out.append(
            EvalResult(
                task_type=task_type,
                task_name=task_name,
                dataset_type=ds_type,
                dataset_name=ds_name,
                dataset_split=split,
                metric_type=metric_type,
                metric_name=metric_name,
                metric_value=round(float(value), 4),
                source_name=source_name or None,
                source_url=source_url if source_name else None,
            )
        )
    return out


def card_data(
    config: Any,
    *,
    license: str = "apache-2.0",
    encoder_pretrained: bool = False,
    base_model: str | Sequence[str] | None = None,
    datasets: Sequence[str] | None = None,
    results: Sequence[EvalResult] | None = None,
    tags: Iterable[str] = (),
    mixin_tags: bool = True,
) -> ModelCardData:
    """The metadata of a uae tokenizer card.

    Args:
        config: The model's :class:`uae.models.config.UAEConfig` (its ``name`` and ``encoder_family``).
        license: Hub license id of the weights.
        encoder_pretrained: The encoder started from its family's pretrained weights (adds the family's
            tag: ``dinov2``, ``clip``, ``siglip2`` or ``mae``); ``False`` for random-init or unknown.
        base_model: The weights these come from (a converted release's repo, a fine-tune's start); only Hub
            repo ids are kept (:func:`hub_repo_ids`).
        datasets: Hub dataset ids the weights were trained on, where known.
        results: ``model-index`` entries (:func:`eval_results`).
        tags: More tags (``converted``, the release format, ...).
        mixin_tags: Add huggingface_hub's ``PyTorchModelHubMixin`` tags.

    Returns:
        A :class:`huggingface_hub.ModelCardData`.
    """
    all_tags = [*CARD_TAGS, *tags]
    family = FAMILY_TAGS.get(getattr(config, "encoder_family", ""), "")
    if encoder_pretrained and family:
        all_tags.append(family)
    if mixin_tags:
        all_tags += MIXIN_TAGS
    bases = hub_repo_ids(base_model)
    return ModelCardData(
        library_name="uae",
        license=license or "other",
        pipeline_tag=PIPELINE_TAG,
        tags=sorted(set(all_tags)),
        base_model=(bases[0] if len(bases) == 1 else bases) or None,
        datasets=list(datasets) or None if datasets else None,
        model_name=config.name if results else None,
        eval_results=list(results) or None if results else None,
    )


def check_card(text: str) -> ModelCard:
    """Parse a card as the Hub does (:class:`huggingface_hub.ModelCard`) and check uae's rules.

    Raises:
        InputError: No metadata, a ``model-index`` huggingface_hub cannot read, ``library_name`` /
            ``license`` / ``pipeline_tag`` missing, a ``base_model`` that is no repo id, or a local path
            (``/home/...``, ``C:\\...``) anywhere in the card.
    """
    try:
        card = ModelCard(text, ignore_metadata_errors=False)
    except (ValueError, KeyError, TypeError) as e:
        raise InputError(f"the model card's metadata does not parse: {e}") from e
    data = card.data
    missing = [k for k in ("library_name", "license", "pipeline_tag", "tags") if not getattr(data, k, None)]
    if missing:
        raise InputError(f"the model card's metadata lacks {', '.join(missing)}")
    bases = [data.base_model] if isinstance(data.base_model, str) else list(data.base_model or [])
    if bases and hub_repo_ids(bases) != bases:
        raise InputError(f"base_model must be Hub repo ids, got {bases}")
    if m := LOCAL_PATH.search(text):
        line = text[: m.start()].count("\n") + 1
        raise InputError(f"the model card names a local path (line {line}): {text.splitlines()[line - 1]!r}")
    return card


__all__ = [
    "CARD_TAGS",
    "PIPELINE_TAG",
    "card_data",
    "check_card",
    "display_source",
    "eval_results",
    "hub_repo_ids",
    "repo_id_problem",
]


def model_card(model: Any, **kwargs: Any) -> ModelCard:
    """The card of a model with a uae config (``model.config``): Hub metadata and the config summary.

    Args:
        model: A :class:`uae.UAE` (or a model of another family with a ``config``).
        **kwargs: Metadata: ``license``, ``encoder_pretrained`` (the encoder started from its family's
            pretrained weights: adds e.g. the ``dinov2`` tag), ``base_model``, ``datasets``, ``results``
            (``model-index`` entries, :func:`eval_results`), ``tags`` (more tags). Text: ``repo_id`` (in the
            usage example), ``encoder_init`` (the encoder's initial weights, named without local paths),
            ``training``, ``evaluation``; any other key reaches the template.

    Returns:
        The card; its metadata parses back with :class:`huggingface_hub.ModelCard`.
    """
    from uae._version import __version__

    c = model.config
    meta = {k: kwargs.pop(k) for k in CARD_DATA_KEYS if k in kwargs}
    init = kwargs.pop("encoder_init", None) or kwargs.pop("encoder_weights", None)
    values = {
        "model_name": c.name,
        "repo_id": kwargs.pop("repo_id", f"<org>/{c.name}"),
        "latent_shape": "x".join(str(v) for v in c.latent_shape),
        "output_size": c.output_size,
        "num_params": f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f}M",
        "uae_version": __version__,
        **c.to_dict(),
        "encoder_init": f"`{init}`" if init else "not recorded in this card",
    }
    values.update(kwargs)
    data = card_data(c, **meta)
    return ModelCard.from_template(data, template_str=MODEL_CARD_TEMPLATE, paper_url=PAPER_URL, **values)
