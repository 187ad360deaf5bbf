"""uae models inside other libraries' code.

* :mod:`uae.integrations.diffusers`: a UAE presented to diffusers as an autoencoder
  (``encode(x).latent_dist``, ``decode(z).sample``, ``config.scaling_factor``, ...), like diffusers'
  ``AutoencoderKL`` and ``AutoencoderRAE``.

Nothing here is imported by ``import uae``; each submodule imports its library (an optional
dependency: ``pip install 'uae[peers]'``) only when it is itself imported.
"""
