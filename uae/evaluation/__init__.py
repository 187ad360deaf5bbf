"""Evaluation and analysis: reconstruction metrics, linear probes, latent spectra, filtered evaluation,
latent export. Modules import their heavy dependencies lazily; import the submodules directly.

Each evaluation command has one entry point that takes a model, a dataset and keyword arguments::

    from uae.evaluation.common import prepare_model
    from uae.evaluation.filtered import filtered_evaluation   # uae filtered-eval
    from uae.evaluation.latents import encode_dataset         # uae encode
    from uae.evaluation.options import ProbeOptions, RunOptions
    from uae.evaluation.probe import linear_probe             # uae probe
    from uae.evaluation.reconstruction import evaluate_dataset  # uae eval
    from uae.evaluation.spectrum import latent_spectra        # uae spectrum

and the pieces underneath stay importable::

    from uae.evaluation.metrics import ReconstructionMetrics
    from uae.evaluation.reconstruction import evaluate_reconstruction
    from uae.evaluation.features import extract_features
    from uae.evaluation.probe import train_probe, LinearProbe
    from uae.evaluation.spectrum import compute_spectra
    from uae.evaluation.filtered import split_frequencies
    from uae.evaluation.latents import export_latents
    from uae.evaluation.shards import load_shard, verify_export
"""
