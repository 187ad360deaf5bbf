"""uae's error types: each is also the built-in a notebook user would catch, and carries its parameter."""

from __future__ import annotations

import pickle

import pytest

from uae.errors import (
    ConfigError,
    DamagedFileError,
    InputError,
    MissingFileError,
    OutputError,
    UAEError,
    UAELoadError,
    UnsafeFileError,
    for_flags,
)


@pytest.mark.parametrize(
    ("cls", "builtin"),
    [
        (InputError, ValueError),
        (ConfigError, ValueError),
        (DamagedFileError, ValueError),
        (UnsafeFileError, ValueError),
        (UAELoadError, ValueError),
        (MissingFileError, FileNotFoundError),
        (OutputError, OSError),
    ],
)
def test_each_error_is_uae_and_builtin(cls: type, builtin: type) -> None:
    e = cls("x is wrong", param="x")
    assert isinstance(e, UAEError) and isinstance(e, builtin)
    assert str(e) == "x is wrong" and e.param == "x"
    back = pickle.loads(pickle.dumps(e))  # DataLoader workers send errors across processes
    assert type(back) is cls and back.param == "x" and str(back) == "x is wrong"


def test_for_flags_names_the_flag_and_keeps_one_line() -> None:
    e = MissingFileError(
        "inception_weights '/no/file' does not exist\nsecond line", param="inception_weights"
    )
    assert (
        for_flags(e, {"inception_weights": "--inception-weights"})
        == "--inception-weights '/no/file' does not exist"
    )
    assert for_flags(e, {}) == "inception_weights '/no/file' does not exist"
    assert for_flags(KeyError(), {}) == "KeyError"


def test_for_flags_replaces_the_parameter_not_a_path_or_a_later_mention() -> None:
    e = InputError("out 'outputs/out/x.png' is inside 'out', which is an existing file (out)", param="out")
    assert for_flags(e, {"out": "--out"}) == (
        "--out 'outputs/out/x.png' is inside 'out', which is an existing file (out)"
    )
    e = InputError("device 'gpu0' is not a torch device", param="device")
    assert for_flags(e, {"device": "--device"}) == "--device 'gpu0' is not a torch device"
