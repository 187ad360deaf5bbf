"""``uae convert --from authors|authors_v1|authors_v2|rae|dit FILE --out DIR``: write a converted model.

Parses the options, calls :func:`uae.convert.release.convert_release` with keywords and prints a summary;
the release formats and their aliases come from :data:`uae.convert.release.RELEASE_SOURCES`.
"""

from __future__ import annotations

from collections.abc import Sequence

from uae.commands._options import ArgumentParser, positive_int

#: Parameter of :func:`~uae.convert.release.convert_release` -> the option that sets it.
FLAGS = {
    "source": "--from",
    "out": "--out",
    "config": "--config",
    "stats": "--stats",
    "encoder_weights": "--encoder-weights",
    "entry": "--entry",
    "encoder": "--encoder",
    "encoder_heads": "--encoder-heads",
    "decoder_heads": "--decoder-heads",
    "name": "--name",
}


def build_parser() -> ArgumentParser:
    """Options of ``uae convert``."""
    from uae.convert.release import RELEASE_SOURCES, release_sources

    formats = "; ".join(
        f"{s.name}{''.join(f' (or {a})' for a in s.aliases)}: {s.summary}" for s in RELEASE_SOURCES
    )
    parser = ArgumentParser(
        prog="uae convert",
        description=f"Convert a released checkpoint into uae's layout (config.json + model.safetensors). "
        f"Formats: {formats}.",
    )
    parser.add_argument(
        "--from",
        dest="source",
        choices=release_sources(aliases=True),
        required=True,
        help="checkpoint family",
    )
    parser.add_argument("file", help="checkpoint file (.pt/.pth/.bin/.safetensors)")
    parser.add_argument("--out", required=True, help="output directory (created)")
    parser.add_argument(
        "--encoder",
        choices=("dinov2", "siglip2", "mae"),
        default=None,
        help="rae: the encoder the decoder was trained with (RAE's decoders for DINOv2, SigLIP2 and MAE have the "
        "same shapes); needed unless --config (RAE's stage-1 YAML) or the decoder's path "
        "(decoders/<encoder>/...) says it",
    )
    parser.add_argument(
        "--encoder-weights",
        default=None,
        help="rae: the encoder's weights (transformers model.safetensors; DINOv2 also timm or facebookresearch); "
        "default: from the Hub cache",
    )
    parser.add_argument(
        "--entry",
        default=None,
        help="state dict entry to use (authors: default 'model', what their evaluation loads; authors_v2: "
        "'ema', what theirs loads; rae: 'ema', else 'model')",
    )
    parser.add_argument(
        "--config",
        default=None,
        help="authors: the release's YAML config (default: the config embedded in the checkpoint); "
        "authors_v2: its config.yaml (default: config.yaml beside the checkpoint; the 64-token tokenizer: "
        "64token.yaml); rae: RAE's stage-1 YAML (configs/stage1/pretrained/*.yaml); dit: the sampling YAML "
        "whose stage_2.params describe the generator (or --name of a registered generator such as dit_dh_xl)",
    )
    parser.add_argument("--stats", default=None, help="optional latent statistics file with 'mean' and 'var'")
    parser.add_argument(
        "--encoder-heads", type=positive_int, default=None, help="encoder attention heads (default C // 64)"
    )
    parser.add_argument(
        "--decoder-heads", type=positive_int, default=None, help="decoder attention heads (default by width)"
    )
    parser.add_argument("--name", default=None, help="config.name of the converted model")
    return parser


def main(argv: Sequence[str]) -> int:
    """Parse, convert with :func:`uae.convert.release.convert_release`, print one line about the result."""
    args = build_parser().parse_args(list(argv))
    from uae.paths import output_dir

    output_dir(args.out, param="out")  # before the (slow) conversion
    from uae.convert.release import convert_release

    model = convert_release(
        args.source,
        args.file,
        out=args.out,
        config=args.config,
        stats=args.stats,
        encoder_weights=args.encoder_weights,
        entry=args.entry,
        encoder=args.encoder,
        encoder_heads=args.encoder_heads,
        decoder_heads=args.decoder_heads,
        name=args.name,
    )
    c = model.config
    size = f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters"
    if not hasattr(c, "num_bands"):  # a generator (--from dit)
        print(
            f"wrote {args.out}: {c.name}, DiT-DH generator of {'x'.join(map(str, c.latent_shape))} latents, "
            f"trunk {c.hidden_size}x{c.depth}, head {c.head_hidden_size}x{c.head_depth}, {size}"
        )
        return 0
    print(
        f"wrote {args.out}: {c.name}, input {c.img_size}px -> output {c.output_size}px, latent "
        f"{'x'.join(map(str, c.latent_shape))}, K={c.num_bands}, {size}"
    )
    return 0
