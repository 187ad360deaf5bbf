"""Hugging Face Space entry point for the uae band explorer (``uae app``), runnable as is: ``python app.py``.

A Space built from this repository runs this file. The model is the embedded demo unless the Space
sets ``UAE_MODEL`` (a registered name, a model directory or a Hub repo id). Gradio binds to loopback
unless ``GRADIO_SERVER_NAME`` says otherwise (Spaces set it to ``0.0.0.0``); analytics are off and no
share link is created.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # run from a checkout without installing

from uae.app import build_app, launch_kwargs  # noqa: E402

demo = build_app(os.environ.get("UAE_MODEL", "uae_demo"))

if __name__ == "__main__":
    demo.launch(
        **launch_kwargs(
            host=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
            port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
        )
    )
