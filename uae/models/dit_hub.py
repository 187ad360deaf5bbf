"""Hub I/O of the generators: :class:`uae.models.hub.UAEHubMixin` with the DiT-DH config and a generator card.

Everything else is the tokenizers' mixin, unchanged: the ``save_pretrained`` layout (a flat
``config.json`` stamped ``"architecture": "DiTDH"`` + ``model.safetensors``), ``from_pretrained`` from a
directory or a Hub repo id (the Hub keywords of :class:`~uae.models.hub.HubOptions`), strict key, shape,
dtype and finiteness checks with one :class:`~uae.errors.UAELoadError` per problem, ``push_to_hub``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from huggingface_hub import ModelCard, PyTorchModelHubMixin

from uae._version import __version__
from uae.models.dit_config import ARCHITECTURE, DiTDHConfig
from uae.models.hub import UAEHubMixin

DIT_CARD_TEMPLATE = """---
{{ card_data }}
---

# {{ model_name }}

A class-conditional **DiT-DH** latent generator (a diffusion transformer with a wide "DDT head", flow
matching) from the `uae` package. It generates latents of a uae tokenizer, which decodes them to images.

| | |
|---|---|
| latent | {{ latent_shape }} (C, H, W) |
| trunk | width {{ hidden_size }}, depth {{ depth }}, {{ num_heads }} heads |
| head | width {{ head_hidden_size }}, depth {{ head_depth }}, {{ head_num_heads }} heads |
| classes | {{ num_classes }} (+ the null class of classifier-free guidance) |
| tokenizer | {{ tokenizer }} |
| parameters | {{ num_params }} |
| uae version | {{ uae_version }} |

## Usage

```python
import uae
generator = uae.models.dit.DiTDH.from_pretrained("{{ repo_id }}")
# with its tokenizer and the release's sampler settings: uae.GenerationPipeline
```
"""


class DiTDHHubMixin(
    UAEHubMixin,
    library_name="uae",
    paper_url="https://arxiv.org/abs/2510.11690",
    model_card_template=DIT_CARD_TEMPLATE,
):
    """``save_pretrained`` / ``from_pretrained`` / ``push_to_hub`` for :class:`uae.models.dit.DiTDH`."""

    config: DiTDHConfig
    _hub_config_class: ClassVar[type] = DiTDHConfig
    _hub_architecture: ClassVar[str] = ARCHITECTURE

    def generate_model_card(self, *args: Any, **kwargs: Any) -> ModelCard:
        """Model card with the generator's config filled in (extra ``kwargs`` reach the template).

        Args:
            *args: Passed to huggingface_hub's card builder.
            **kwargs: ``tokenizer``: the tokenizer whose latents it generates (a registered name or Hub
                repo id as is; a local path by its last component only); any other key reaches the template.
        """
        from uae.models.card import display_source

        c = self.config
        tokenizer = display_source(kwargs.pop("tokenizer", None))
        values = {
            "tokenizer": f"`{tokenizer}`" if tokenizer else "not recorded in this card",
            "model_name": c.name,
            "repo_id": kwargs.pop("repo_id", f"<org>/{c.name}"),
            "latent_shape": "x".join(str(v) for v in c.latent_shape),
            "num_params": f"{sum(p.numel() for p in self.parameters()) / 1e6:.1f}M",
            "uae_version": __version__,
            **c.to_dict(),
        }
        values.update(kwargs)
        return PyTorchModelHubMixin.generate_model_card(self, *args, **values)


# The card data is copied from the tokenizers' mixin and the tags merged; a generator's card keeps its own.
_TAGS = ["uae", "image-generation", "class-conditional", "diffusion-transformer", "flow-matching"]
DiTDHHubMixin._hub_mixin_info.model_card_data.tags = sorted(
    {*_TAGS, "model_hub_mixin", "pytorch_model_hub_mixin"}
)


__all__ = ["DIT_CARD_TEMPLATE", "DiTDHHubMixin"]
