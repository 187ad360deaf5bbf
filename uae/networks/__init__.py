"""Third-party pretrained networks that losses and metrics use, where their weight files are looked for and
how they are read safely: LPIPS (:mod:`uae.networks.lpips`, the training loss and the one backbone resolver
that ``uae eval`` uses too) and the FID Inception (:mod:`uae.networks.inception`). uae reads every such file
itself with ``torch.load(weights_only=True)`` and hands the library the tensors, never the file."""
