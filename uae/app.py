"""``uae app``: the band explorer, a Gradio page that shows the Prism hypothesis on a person's own image.

This module only wires widgets to the library: every number and picture comes from
:class:`uae.explorer.BandExplorer` and :mod:`uae.visualize` (unit-tested without a browser). The model
is loaded once per process; encodings are cached per image, so the band slider and the filter controls
only decode. Nothing here reaches the network: Gradio's analytics and version check are off, share
links are never requested, and the page binds to loopback unless ``host`` says otherwise.

What the page keeps is bounded: the explorer's cache (:class:`uae.explorer.BandExplorer`, by count and
bytes), and Gradio's folder of uploads and served pictures (``delete_cache``: files older than
``cache_seconds`` are deleted every minute). That folder is a fresh one per process, removed at exit
(:func:`private_temp_dir`), unless ``GRADIO_TEMP_DIR`` names one.

Needs the optional extra: ``pip install 'uae[app]'``.
"""

from __future__ import annotations

import atexit
import ipaddress
import logging
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from uae.errors import InputError, UAEError

logger = logging.getLogger(__name__)

#: Side (pixels) at which images are shown on the page (nearest-neighbour enlargement of the model's pixels).
DISPLAY_SIDE = 256
#: Age (seconds) after which Gradio deletes an upload or a served picture (checked every minute).
CACHE_SECONDS = 300
#: Analyses (originals and filtered versions) and bytes of tensors the explorer keeps per process.
EXPLORER_CACHE_SIZE = 64
EXPLORER_CACHE_BYTES = 512 * 2**20


def private_temp_dir() -> Path:
    """Gradio's folder for uploads and served files in this process.

    ``$GRADIO_TEMP_DIR`` when set (kept: it is the caller's); else a new folder under the system's temp
    folder, exported as ``GRADIO_TEMP_DIR`` and removed when the process exits (Gradio's default, a
    shared ``/tmp/gradio``, is never cleaned up).
    """
    env = os.environ.get("GRADIO_TEMP_DIR")
    if env:
        return Path(env)
    path = Path(tempfile.mkdtemp(prefix="uae-app-"))
    os.environ["GRADIO_TEMP_DIR"] = str(path)
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def is_loopback(host: str | None) -> bool:
    """Whether binding to ``host`` serves this machine only (``127.0.0.1``, ``::1``, ``localhost``)."""
    if host is None:
        return True  # Gradio's default is loopback
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False  # "" or 0.0.0.0-like, or a host name: other machines may reach it


def _offline_environment() -> None:
    """Turn off everything in Gradio / the Hub client that would phone home (before importing gradio)."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
    os.environ.setdefault("GRADIO_SHARE", "False")
    # Gradio checks its own server with an HTTP request; never send that through a proxy.
    for var in ("NO_PROXY", "no_proxy"):
        hosts = [h for h in os.environ.get(var, "").split(",") if h]
        os.environ[var] = ",".join(hosts + [h for h in ("127.0.0.1", "localhost", "::1") if h not in hosts])


def _import_gradio():
    _offline_environment()
    try:
        import gradio as gr
    except ImportError as e:  # pragma: no cover - depends on the install
        raise InputError("the band explorer needs Gradio: pip install 'uae[app]'") from e
    return gr


def _fmt_energy(energy) -> str:
    return " · ".join(f"band {k}: {100 * float(v):.1f}%" for k, v in enumerate(energy))


def build_app(
    model: Any = "uae_demo",
    device: str = "cpu",
    photos: Sequence[str | os.PathLike] | None = None,
    cache_seconds: int = CACHE_SECONDS,
):
    """Build the Gradio ``Blocks`` of the band explorer.

    Args:
        model: A :class:`uae.UAE`, or a registered name, model directory or Hub repo id.
        device: Torch device for a model given by name.
        photos: Pictures offered for one-click use (default: :func:`uae.explorer.bundled_photos`).
        cache_seconds: Uploads and served pictures older than this are deleted (every
            ``min(60, cache_seconds)`` seconds, and all of them when the server stops).

    Returns:
        The ``gradio.Blocks`` (call :func:`serve`, or ``.launch(**launch_kwargs(...))``).

    Raises:
        InputError: ``cache_seconds`` < 1.
    """
    if isinstance(cache_seconds, bool) or not isinstance(cache_seconds, int) or cache_seconds < 1:
        raise InputError(
            f"cache_seconds must be an integer >= 1, got {cache_seconds!r}", param="cache_seconds"
        )
    private_temp_dir()  # before any component exists: each one records the folder when it is built
    gr = _import_gradio()

    from uae.explorer import BandExplorer, bundled_photos, open_image
    from uae.factory import load_model
    from uae.visualize import band_energy_chart, band_figure, band_label, enlarge, radial_spectrum_chart

    if isinstance(model, str | os.PathLike):
        model = load_model(str(model), device=device)
    explorer = BandExplorer(model, cache_size=EXPLORER_CACHE_SIZE, max_cache_bytes=EXPLORER_CACHE_BYTES)
    cfg = model.config
    k = cfg.num_bands
    photos = [Path(p) for p in (bundled_photos() if photos is None else photos)]
    explorer.warmup()

    def show(img) -> Any:
        return enlarge(img, DISPLAY_SIDE)

    def band_caption(upto: int, score: float) -> str:
        return f"**{band_label(upto, k)}** (decoded {upto + 1} of {k} bands) — PSNR **{score:.2f} dB**"

    # ------------------------------------------------------------------ handlers (no computation of their own)
    def analyse_file(path: str | None, n_bands: int):
        """First answer to a new image: the pictures a person looks at first (fast)."""
        if not path:
            raise InputError("no file received")
        image, notes = open_image(path)
        a = explorer.analyse(image)
        upto = int(n_bands) - 1
        decode, score = explorer.decode(a, upto)
        crop = explorer.model.pretrained_cfg.get("resize_size")  # a release's own crop, then its resize
        step = f"centre crop {crop} px -> {cfg.img_size} px" if crop else f"centre crop -> {cfg.img_size} px"
        note = f"Loaded **{Path(path).name}** ({image.width}x{image.height} px, {step})."
        if notes:
            note += " " + "; ".join(notes) + "."
        return (
            note,
            a.key,
            show(a.image),
            show(a.reconstruction),
            f"Reconstruction: PSNR **{a.psnr:.2f} dB**, SSIM **{a.ssim:.4f}** (against the {cfg.output_size} px input crop)",
            show(decode),
            band_caption(upto, score),
            show(explorer.band0_rgb(a)),
        )

    def charts(path: str | None, kind: str, radius: float):
        """Second answer to a new image, computed alongside the first: the strip, the charts, the filter section.

        A file the first step refused changes nothing here (the first step shows the message).
        """
        try:
            a = explorer.analyse(open_image(path)[0]) if path else None  # cached: the first step encoded it
        except (UAEError, OSError):
            a = None
        if a is None:
            return (gr.update(),) * 6
        decodes, psnrs = explorer.progressive(a)
        return (
            band_figure(a.image[None], decodes[None], a.energy[None], psnrs=psnrs[None]),
            *filter_outputs(a, kind, radius),
        )

    def filter_outputs(a, kind: str, radius: float):
        f = explorer.filtered(a, kind, float(radius))
        name = {"original": "unfiltered", "lfc": f"low-pass r={radius:g}", "hfc": f"high-pass r={radius:g}"}[
            kind
        ]
        if f is a:
            text = f"No filter. Band energy {_fmt_energy(a.energy)}."
        else:
            text = (
                f"**{name}** input: reconstruction PSNR **{f.psnr:.2f} dB**, SSIM {f.ssim:.4f} (against the filtered "
                f"input). Band energy {_fmt_energy(f.energy)} (original: {_fmt_energy(a.energy)})."
            )
        series = {"this image": a.energy} if f is a else {"original": a.energy, name: f.energy}
        latents = {"this image": a.latent} if f is a else {"original": a.latent, name: f.latent}
        return (
            show(f.image),
            show(f.reconstruction),
            text,
            band_energy_chart(series),
            radial_spectrum_chart(latents, num_bands=k),
        )

    def get(key: str | None):
        a = explorer.get(key) if key else None
        if a is None:
            raise InputError("upload an image or pick a photograph first")
        return a

    def on_slider(key: str | None, n_bands: int):
        a = get(key)
        upto = int(n_bands) - 1
        decode, score = explorer.decode(a, upto)
        return show(decode), band_caption(upto, score)

    def on_filter(key: str | None, kind: str, radius: float):
        return filter_outputs(get(key), kind, float(radius))

    def image(label: str, elem_id: str, chart: bool = False):
        # Charts carry their own titles and axis labels; Gradio's label overlay would hide them.
        return gr.Image(
            label=label,
            show_label=not chart,
            type="pil",
            format="png",
            elem_id=elem_id,
            interactive=False,
        )

    # ------------------------------------------------------------------ layout
    with gr.Blocks(
        title=f"uae band explorer — {cfg.name}",
        analytics_enabled=False,
        delete_cache=(min(60, cache_seconds), cache_seconds),
    ) as demo:
        gr.Markdown(
            f"# The Prism hypothesis on your own image\n"
            f"A Unified Autoencoder (**{cfg.name}**) encodes the image into a {cfg.latent_dim}x{cfg.grid_size}x{cfg.grid_size} "
            f"latent grid and splits it into **{k} frequency bands**: band 0 (lowest spatial frequencies) carries the "
            f"semantics and the coarse layout, the higher bands the pixel detail. Decode from band 0 alone, add "
            f"bands one by one, look at where the energy sits, and filter the input to see which band reacts."
        )
        key = gr.State(None)
        with gr.Row():
            with gr.Column(scale=1):
                upload = gr.File(
                    label="Upload an image (PNG, JPEG, WebP, ...)", type="filepath", elem_id="upload"
                )
                gallery = gr.Gallery(
                    value=[(str(p), p.stem) for p in photos],
                    label="...or pick a photograph",
                    columns=4,
                    height=140,
                    allow_preview=False,
                    elem_id="photos",
                )
            with gr.Column(scale=2):
                status = gr.Markdown("Upload an image or pick a photograph.", elem_id="status")
                with gr.Row():
                    inp = image("input (model crop)", "input-image")
                    rec = image("reconstruction (all bands)", "recon-image")
                    pca = image("band 0 features, PCA -> RGB", "pca-image")
                metrics = gr.Markdown(elem_id="metrics")
        gr.Markdown("## Progressive decoding: how much of the image each band adds")
        with gr.Row():
            with gr.Column(scale=1):
                slider = gr.Slider(
                    1,
                    k,
                    value=k,
                    step=1,
                    label=f"number of bands decoded (1 = band 0 only ... {k} = all)",
                    elem_id="band-slider",
                )
                decode_text = gr.Markdown(elem_id="decode-psnr")
                decode_img = image("decode", "decode-image")
            with gr.Column(scale=2):
                strip = image("all progressive decodes (PSNR under each)", "strip-image", chart=True)
        gr.Markdown(
            "## Where the latent's energy sits, and what a low-pass / high-pass input does to it\n"
            "Filter the input at radius *r* (1 = Nyquist; ideal radial mask, the high-pass image is shown on "
            "mid-gray; Wang et al.'s LFC / HFC analysis) and compare its reconstruction, band energies and latent "
            "spectrum with the original's."
        )
        with gr.Row():
            kind = gr.Radio(
                [("no filter", "original"), ("low-pass (LFC)", "lfc"), ("high-pass (HFC)", "hfc")],
                value="original",
                label="filter",
                elem_id="filter-kind",
            )
            radius = gr.Slider(
                0.05, 1.4, value=0.25, step=0.05, label="radius r (1 = Nyquist)", elem_id="filter-radius"
            )
        filter_text = gr.Markdown(elem_id="filter-text")
        with gr.Row():
            f_inp = image("filtered input", "filtered-input")
            f_rec = image("its reconstruction", "filtered-recon")
        with gr.Row():
            energy_img = image("energy per band", "energy-chart", chart=True)
            spectrum_img = image("radial spectrum of the latent", "spectrum-chart", chart=True)

        first_outputs = [status, key, inp, rec, metrics, decode_img, decode_text, pca]
        filter_outs = [f_inp, f_rec, filter_text, energy_img, spectrum_img]
        chart_outputs = [strip, *filter_outs]

        def photo(evt) -> str:
            return str(photos[evt.index])

        def pick(n_bands, evt):
            return analyse_file(photo(evt), n_bands)

        def pick_charts(kind_, radius_, evt):
            return charts(photo(evt), kind_, radius_)

        for fn in (pick, pick_charts):
            fn.__annotations__ = {"evt": gr.SelectData}  # a real class: Gradio fills it in from the event

        # Two listeners per new image, run side by side: the first pictures at once, the charts a moment later.
        upload.upload(_guarded(analyse_file, status, first_outputs, gr), [upload, slider], first_outputs)
        upload.upload(
            _guarded(charts, status, chart_outputs, gr), [upload, kind, radius], [*chart_outputs, status]
        )
        gallery.select(_guarded(pick, status, first_outputs, gr), [slider], first_outputs)
        gallery.select(
            _guarded(pick_charts, status, chart_outputs, gr), [kind, radius], [*chart_outputs, status]
        )
        slider.change(
            _guarded(on_slider, status, [decode_img, decode_text], gr),
            [key, slider],
            [decode_img, decode_text, status],
        )
        for control in (kind, radius):
            control.change(
                _guarded(on_filter, status, filter_outs, gr), [key, kind, radius], [*filter_outs, status]
            )
    return demo


def _guarded(fn: Callable, status, outputs: list, gr) -> Callable:
    """Wrap a handler: a failure becomes a message in ``status`` and leaves the other outputs unchanged.

    uae's own errors (:class:`uae.errors.UAEError`: an unreadable or too large upload, ...) are shown as
    they are; anything else is a bug: the page says so and the server log keeps the traceback.

    When ``status`` is not among ``outputs`` it is appended to the returned values (the event must list
    it last); on success it is cleared only if the handler does not set it itself.
    """
    import functools

    in_outputs = status in outputs
    status_index = outputs.index(status) if in_outputs else None

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            values = fn(*args, **kwargs)
            values = tuple(values) if isinstance(values, tuple | list) else (values,)
            return values if in_outputs else (*values, gr.update())
        except UAEError as e:
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            logger.warning("band explorer: %s", msg)
        except Exception as e:  # noqa: BLE001 - the page must keep working; the log keeps the traceback
            logger.exception("band explorer: unexpected error")
            msg = f"something went wrong ({type(e).__name__}); see the server log"
        message = f"⚠️ **Could not use this input:** {msg}"
        n = len(outputs) if in_outputs else len(outputs) + 1
        values = [gr.update()] * n
        values[status_index if in_outputs else -1] = message
        return tuple(values)

    return wrapper


def serve(demo, **launch: Any) -> None:
    """``demo.launch(**launch)`` until interrupted; SIGTERM stops it as Ctrl+C does.

    Stopping closes the server (Gradio then deletes the files this page created) and returns; the
    process's private temp folder (:func:`private_temp_dir`) goes at exit.

    Args:
        demo: The ``Blocks`` of :func:`build_app`.
        **launch: ``Blocks.launch`` arguments (:func:`launch_kwargs`).
    """

    def interrupt(signum, frame):  # noqa: ARG001 - signal handler signature
        raise KeyboardInterrupt

    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        demo.launch(**launch)
    except KeyboardInterrupt:
        pass
    finally:
        demo.close()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def launch_kwargs(host: str | None = "127.0.0.1", port: int | None = None) -> dict[str, Any]:
    """Arguments for ``Blocks.launch``: loopback by default, no share link, no server-side rendering.

    Args:
        host: Address to bind.
        port: Port (``None``: Gradio's choice).

    Raises:
        InputError: ``port`` outside 1..65535.
    """
    from uae.explorer import MAX_IMAGE_BYTES

    if port is not None and not 0 < port < 65536:
        raise InputError(f"port must be in 1..65535, got {port}", param="port")
    return {
        "server_name": host,
        "server_port": port,
        "share": False,
        "ssr_mode": False,
        "show_error": False,
        "max_file_size": MAX_IMAGE_BYTES,
        "footer_links": [],
    }
