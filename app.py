"""Hugging Face Space entry point for the uae band explorer (``uae app``), runnable as is: ``python app.py``.

A Space made from this repository runs this file: its README's front matter says ``sdk: gradio`` and
``app_file: app.py``, and ``requirements.txt`` installs uae's dependencies and Gradio (the package itself
is imported from this folder; an installed ``uae`` works too). The model is the embedded demo unless the
Space sets ``UAE_MODEL`` (a registered name, a model directory or a Hub repo id). Gradio binds to
loopback unless ``GRADIO_SERVER_NAME`` says otherwise (Spaces set it to ``0.0.0.0``); analytics are off
and no share link is created. Uploads and served pictures are deleted after ``UAE_APP_CACHE_SECONDS``
(default 300) and Gradio's folder is removed at exit.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # run from a checkout without installing

from uae.app import CACHE_SECONDS, build_app, launch_kwargs, serve  # noqa: E402

demo = build_app(
    os.environ.get("UAE_MODEL", "uae_demo"),
    cache_seconds=int(os.environ.get("UAE_APP_CACHE_SECONDS", CACHE_SECONDS)),
)

if __name__ == "__main__":
    serve(
        demo,
        **launch_kwargs(
            host=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
            port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
        ),
    )
