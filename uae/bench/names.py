"""Names of the benchmark's operations, peers and ablations: light, for the ``uae bench`` parser."""

from __future__ import annotations

#: uae operations timed for every subject.
OPS = ("encode", "decode", "reconstruct")
#: Peer tokenizers measured beside uae (``--peers``).
PEERS = ("sd-vae", "rae", "rae-equiv", "dinov2")
#: Options flipped for a second reconstruct measurement (``--ablations``).
ABLATIONS = ("sdpa", "compile")
#: The paper's B configuration, where the projector + modulator share target applies.
B_CONFIG = "uae_base_p14_dinov2"
