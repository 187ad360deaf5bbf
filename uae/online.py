"""Whether the network may be used: the one offline switch and the one reachability probe of the package.

Every download uae makes (Hub files, the FID Inception and LPIPS backbone weights) asks :func:`offline`
and :func:`reachable` first, so that a machine without network fails at once with a message naming the
file to supply, instead of waiting on retries.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import urllib.parse
import urllib.request

logger = logging.getLogger(__name__)

#: Seconds the connect probe may take (``UAE_HUB_PROBE_TIMEOUT``; ``0`` disables the probe).
DEFAULT_PROBE_TIMEOUT = 0.5
_TRUE = {"1", "ON", "YES", "TRUE"}
_PROBES: dict[tuple[str, int], bool] = {}
_PROBES_LOCK = threading.Lock()


def offline() -> bool:
    """``HF_HUB_OFFLINE`` or ``UAE_OFFLINE`` set to a true value (read now), or huggingface_hub's offline constant."""
    if any(os.environ.get(k, "").strip().upper() in _TRUE for k in ("HF_HUB_OFFLINE", "UAE_OFFLINE")):
        return True
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _probe_target(url: str) -> tuple[str, int] | None:
    parts = urllib.parse.urlsplit(url)
    if not parts.hostname:
        return None
    proxies = urllib.request.getproxies()
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if proxy and not urllib.request.proxy_bypass(parts.hostname):
        p = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        if p.hostname:
            return p.hostname, p.port or (443 if p.scheme == "https" else 80)
    return parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)


def reachable(url: str) -> bool:
    """Whether a TCP connection to ``url``'s host (or its proxy) opens within ``UAE_HUB_PROBE_TIMEOUT`` s.

    Callers ask :func:`offline` first (see :func:`may_download`). The answer is cached per process and host. Name resolution runs
    inside the same time limit (in a helper thread), so a machine without network answers in under a second.
    """
    timeout = float(os.environ.get("UAE_HUB_PROBE_TIMEOUT", DEFAULT_PROBE_TIMEOUT))
    if timeout <= 0:
        return True
    target = _probe_target(url)
    if target is None:
        return True
    with _PROBES_LOCK:
        if target in _PROBES:
            return _PROBES[target]
    result: list[bool] = []

    def probe() -> None:
        try:
            socket.create_connection(target, timeout=timeout).close()
            result.append(True)
        except OSError:
            result.append(False)

    t = threading.Thread(target=probe, name="uae-network-probe", daemon=True)
    t.start()
    t.join(timeout)
    ok = bool(result and result[0])
    if not ok:
        logger.info("%s:%s is unreachable; using local files only", *target)
    with _PROBES_LOCK:
        _PROBES[target] = ok
    return ok


def may_download(url: str) -> bool:
    """Not :func:`offline` and ``url``'s host :func:`reachable`: a download may be tried."""
    return not offline() and reachable(url)
