"""Evaluation and analysis: reconstruction metrics, linear probes, latent spectra, filtered evaluation,
latent export. Modules import their heavy dependencies lazily; import the submodules directly::

    from uae.evaluation.metrics import ReconstructionMetrics
    from uae.evaluation.reconstruction import evaluate_reconstruction
    from uae.evaluation.probe import extract_features, train_probe, LinearProbe
    from uae.evaluation.spectrum import compute_spectra, radial_power
    from uae.evaluation.filtered import split_frequencies
    from uae.evaluation.export import export_latents, verify_export
"""
