"""Loading weights into a model without a wasted initialisation, strictly: the one path every loader takes.

Every model uae loads (``from_pretrained``, ``create_model(..., pretrained=True)``, the converted cache,
``uae convert``, the checkpoints of ``uae export``) is built by :func:`build_empty`: its parameters on
the meta device (no memory, no random initialisation), its buffers computed as usual (the band masks,
the decoder's sin-cos table and the RoPE tables are not saved: they are recomputed, exactly as at
construction). :func:`assign_state_dict` then checks the weights (keys, shapes, floating point where the
model has floating point, every value finite) and *assigns* them (``load_state_dict(assign=True)``): a
safetensors file read by :func:`read_weights` is memory-mapped, so the model's parameters are the file's
pages and nothing is copied. A model of ``500 M`` parameters loads in the time of reading its file once,
with a peak memory of about the file's size.

Before anything is built, :func:`check_model_size` estimates the parameter count and memory from the
config alone and refuses an absurd one (``decoder_depth: 100000`` in a ``config.json``), naming the field.

Loading options in the diffusers style (:func:`resolve_dtype`: ``torch_dtype``; ``device``) are applied
by :func:`assign_state_dict` and :func:`place`; :func:`check_dtype_on_device` refuses a dtype the device
cannot run, in one line.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import threading
from collections.abc import Iterator, Mapping
from typing import Any, TypeVar

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from uae.errors import ConfigError, DamagedFileError, InputError, UAELoadError
from uae.utils import non_finite_tensors, non_float_tensors, state_dict_mismatch

logger = logging.getLogger(__name__)

M = TypeVar("M", bound=nn.Module)

#: ``torch_dtype`` names accepted as strings (diffusers and transformers take ``torch.float16`` objects;
#: strings come from configs and the command line). ``"auto"``: the dtype the file stores.
DTYPE_NAMES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float64": torch.float64,
    "double": torch.float64,
}
MODEL_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


# ---------------------------------------------------------------------------------------------- options
def resolve_dtype(
    torch_dtype: torch.dtype | str | None, param: str = "torch_dtype"
) -> torch.dtype | str | None:
    """A ``torch_dtype`` option as a ``torch.dtype``, ``"auto"`` (the file's dtype) or ``None`` (float32).

    Raises:
        InputError: Not a floating dtype a model can hold (names ``param`` and the accepted values).
    """
    if torch_dtype is None or isinstance(torch_dtype, torch.dtype):
        dtype = torch_dtype
    elif isinstance(torch_dtype, str) and torch_dtype.strip().lower() == "auto":
        return "auto"
    elif isinstance(torch_dtype, str):
        dtype = DTYPE_NAMES.get(torch_dtype.strip().lower().removeprefix("torch."))
    else:
        dtype = None
        torch_dtype = repr(torch_dtype)
    if torch_dtype is not None and dtype not in MODEL_DTYPES:
        names = ", ".join(["float32", "float16", "bfloat16", "float64", "auto"])
        raise InputError(f"{param} must be one of {names} (or a torch dtype), got {torch_dtype}", param=param)
    return dtype


def check_dtype_on_device(dtype: torch.dtype, device: torch.device | str, param: str = "torch_dtype") -> None:
    """Refuse a model dtype the device cannot compute in (one line naming both and what to do).

    float32 and float64 run everywhere; float16 and bfloat16 on CUDA, and on CPU where this torch build has
    the CPU kernels the model uses (:func:`cpu_supports`: recent torch has them for both, older builds
    lack half-precision matrix products or attention on CPU).

    Raises:
        InputError: ``param`` names the option.
    """
    device = torch.device(device)
    if device.type != "cpu" or dtype in (torch.float32, torch.float64) or cpu_supports(dtype):
        return
    name = str(dtype).removeprefix("torch.")
    raise InputError(
        f"{param}={name} is not supported on CPU by torch {torch.__version__}: use float32 on CPU, or {name} on "
        "a CUDA device (device='cuda')",
        param=param,
    )


@functools.cache
def cpu_supports(dtype: torch.dtype) -> bool:
    """Whether this torch build runs, on CPU in ``dtype``, the operations a model uses (linear, layer norm,
    conv, attention, GELU), each on a tiny tensor once per process."""
    import torch.nn.functional as F

    try:
        x = torch.ones(1, 2, 4, 4, dtype=dtype)
        w = torch.ones(2, 2, 1, 1, dtype=dtype)
        y = F.conv2d(x, w).flatten(2).transpose(1, 2)  # (1, 16, 2)
        y = F.layer_norm(F.linear(y, torch.ones(2, 2, dtype=dtype)), (2,))
        y = F.scaled_dot_product_attention(y[:, None], y[:, None], y[:, None])
        return bool(torch.isfinite(F.gelu(y).float()).all())
    except (RuntimeError, NotImplementedError):
        return False


# ---------------------------------------------------------------------------------------------- size
def check_model_size(config: Any, limit_bytes: int | None = None, *, source: str = "") -> None:
    """Refuse a config whose weights would not fit in memory, before anything is allocated.

    The parameter count comes from the config's fields (:func:`uae.models.size.estimate_num_params`: the
    tokenizers' and the generators' configs); a config of another kind passes.

    Args:
        config: The model config.
        limit_bytes: The most the float32 weights may take; default: this machine's physical memory.
        source: Where the config comes from (a ``config.json``), for the message.

    Raises:
        ConfigError: The estimate exceeds the limit; names the field that makes the model this large
            (``param``), the parameter count and the memory.
    """
    from uae.models.size import estimate_num_params, largest_size_field

    params = estimate_num_params(config)
    limit = physical_memory() if limit_bytes is None else int(limit_bytes)
    if params is None or params * 4 <= limit:
        return
    field = largest_size_field(config)
    where = f"{source}: " if source else ""
    culprit = f"{field}={getattr(config, field)!r} gives" if field else "this config gives"
    raise ConfigError(
        f"{where}{culprit} a model of {params / 1e9:.3g} billion parameters ({params * 4 / 2**30:.3g} GiB in "
        f"float32), more than the {limit / 2**30:.3g} GiB of memory of this machine: refused before "
        f"allocating anything (check {field or 'the size fields'})",
        param=field,
    )


def physical_memory() -> int:
    """Bytes of physical memory of this machine (a large number where the platform does not say)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, OSError, ValueError):  # pragma: no cover - not POSIX
        return 1 << 50


# ---------------------------------------------------------------------------------------------- building
@contextlib.contextmanager
def parameters_on_meta() -> Iterator[None]:
    """Within the block, every parameter a module of *this thread* registers is moved to the meta device.

    Buffers are created as usual (so buffers that are not saved, such as the band masks, hold their
    computed values), parameters take no memory and their initialisation costs nothing. Other threads
    building modules at the same time are not affected (torch's global registration hook checks the
    thread).
    """
    from torch.nn.modules.module import register_module_parameter_registration_hook

    me = threading.get_ident()

    def to_meta(module: nn.Module, name: str, param: nn.Parameter | None) -> nn.Parameter | None:
        if param is None or param.device.type == "meta" or threading.get_ident() != me:
            return None
        return nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)

    handle = register_module_parameter_registration_hook(to_meta)
    try:
        with _SkipInitOnMeta():
            yield
    finally:
        handle.remove()


class _SkipInitOnMeta(TorchFunctionMode):
    """In-place operations on meta tensors (the initialisers: ``trunc_normal_``, ``zeros_``, ``copy_``, ...)
    return at once instead of dispatching: torch computes some meta kernels (``erfinv_``) with Python
    references that import ``torch._dynamo``, seconds of start-up for values that are thrown away."""

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        first = args[0] if args else next(iter(kwargs.values()), None)  # nn.init passes tensor=...
        if (
            name.endswith("_")
            and not name.startswith("__")
            and isinstance(first, torch.Tensor)
            and first.is_meta
        ):
            return first
        return func(*args, **kwargs)


def build_empty(cls: type[M], config: Any, *, source: str = "") -> M:
    """``cls(config)`` with its parameters on the meta device (see :func:`parameters_on_meta`).

    The config's size is checked first (:func:`check_model_size`). Fill the model with
    :func:`assign_state_dict`; until then it cannot run.
    """
    check_model_size(config, source=source)
    with parameters_on_meta():
        return cls(config)


def has_meta_tensors(module: nn.Module) -> bool:
    """Whether any parameter or buffer of ``module`` is still on the meta device."""
    return any(t.device.type == "meta" for t in (*module.parameters(), *module.buffers()))


# ---------------------------------------------------------------------------------------------- weights
def read_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a ``.safetensors`` file, memory-mapped (nothing is copied until written to).

    Raises:
        MissingFileError: No such file.
        DamagedFileError: Truncated or not a safetensors file (one line naming the file).
    """
    from uae.files import read_safetensors

    return read_safetensors(path)


def check_state_dict(
    model: nn.Module, state: Mapping[str, torch.Tensor], *, strict: bool = True, source: str = ""
) -> tuple[list[str], list[str]]:
    """The checks every load makes: shapes, floating point where the model is, finiteness, and keys.

    Args:
        model: The target (may have meta parameters).
        state: The weights.
        strict: Missing or unexpected keys are an error (else they are returned and logged).
        source: The file, for messages.

    Returns:
        ``(missing, unexpected)`` keys (both empty with ``strict``).

    Raises:
        UAELoadError: A shape mismatch, a non-float tensor for a floating weight, or (with ``strict``)
            missing or unexpected keys; each message names the keys.
        DamagedFileError: Tensors holding NaN or inf (named).
    """
    own = model.state_dict()
    missing, unexpected, bad = state_dict_mismatch(own, state)
    where = f" ({source})" if source else ""
    if bad_dtypes := non_float_tensors(state, own):
        raise UAELoadError(f"weights that must be floating point are not{where}: {bad_dtypes}")
    if bad:
        raise UAELoadError(f"weight shapes do not match the config{where}: {bad}")
    if non_finite := non_finite_tensors(state):
        raise DamagedFileError(f"weights with NaN or inf values{where}: {non_finite}")
    if missing or unexpected:
        msg = f"checkpoint keys do not match the model{where}: missing {missing}, unexpected {unexpected}"
        if strict:
            raise UAELoadError(msg)
        logger.warning("%s (strict=False: missing weights keep their initial values)", msg)
    return missing, unexpected


def assign_state_dict(
    model: M,
    state: Mapping[str, torch.Tensor],
    *,
    strict: bool = True,
    source: str = "",
    dtype: torch.dtype | str | None = None,
) -> M:
    """Check ``state`` (:func:`check_state_dict`) and make it the model's weights.

    A model built by :func:`build_empty` gets the tensors themselves (``assign=True``: memory-mapped
    tensors stay mapped); a model with real parameters gets them copied in. Floating tensors are cast to
    ``dtype`` when given (``"auto"``: the dtype most of them are stored in, :func:`stored_dtype`), else to the model's own dtype for each tensor, so a
    float16 file loads into a float32 model as float32, as ``load_state_dict`` would.

    Raises:
        UAELoadError, DamagedFileError: As :func:`check_state_dict`.
        InputError: Keys missing with ``strict=False`` from a model built on the meta device (they have
            no initial values: build it with real parameters instead).
    """
    missing, _ = check_state_dict(model, state, strict=strict, source=source)
    if dtype == "auto":
        dtype = stored_dtype(state)
    own = model.state_dict()
    meta = {k for k, v in own.items() if v.device.type == "meta"}
    if meta & set(missing):
        raise InputError(
            f"weights missing from {source or 'the state dict'} cannot be left at their initial values of a "
            f"model built without them: {sorted(meta & set(missing))[:10]}"
        )

    def cast(key: str, value: torch.Tensor) -> torch.Tensor:
        target = own[key]
        if not value.is_floating_point():
            return value if value.dtype == target.dtype else value.to(target.dtype)
        want = target.dtype if dtype is None else dtype
        return value if value.dtype == want else value.to(want)

    state = {k: cast(k, v) for k, v in state.items() if k in own}
    model.load_state_dict(state, strict=False, assign=bool(meta))
    if dtype is not None:  # buffers that are not saved follow the model's dtype too
        model.to(dtype)
    if has_meta_tensors(model):  # pragma: no cover - a model whose parameters are not all saved
        left = [n for n, t in (*model.named_parameters(), *model.named_buffers()) if t.device.type == "meta"]
        raise UAELoadError(
            f"{type(model).__name__} has tensors that are neither saved nor computed: {left[:10]}"
        )
    return model


def stored_dtype(state: Mapping[str, torch.Tensor]) -> torch.dtype:
    """The floating dtype most of a state dict's values are stored in (float32 when it holds none)."""
    counts: dict[torch.dtype, int] = {}
    for v in state.values():
        if v.is_floating_point():
            counts[v.dtype] = counts.get(v.dtype, 0) + v.numel()
    return max(counts, key=counts.__getitem__) if counts else torch.float32


def place(model: M, device: torch.device | str | None) -> M:
    """``model.to(device)`` (``None``: stay), after checking the device exists (one line)."""
    if device is None:
        return model
    from uae.utils import check_device

    return model.to(check_device(device))


def model_dtype(model: nn.Module) -> torch.dtype:
    """The dtype of a model's floating parameters (the first one's; float32 for a model without any)."""
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.float32


def model_device(model: nn.Module) -> torch.device:
    """The device of a model's parameters (the first one's; CPU for a model without any)."""
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")


__all__ = [
    "DTYPE_NAMES",
    "MODEL_DTYPES",
    "assign_state_dict",
    "build_empty",
    "check_dtype_on_device",
    "check_model_size",
    "check_state_dict",
    "has_meta_tensors",
    "model_device",
    "model_dtype",
    "parameters_on_meta",
    "physical_memory",
    "place",
    "read_weights",
    "resolve_dtype",
    "stored_dtype",
]
