"""How the streaming loops share a CPU with their loader: heap trimming when the process has grown,
OpenMP threads that sleep instead of spinning in ``uae encode`` (loader workers beside the model), loader
workers that yield the cores to a CPU model, and a heap that keeps freed tensors' memory for the next ones
(every command)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

import uae.evaluation.common as common
from uae.evaluation.common import HeapTrimmer, build_dataset
from uae.hardware import MALLOC_VARIABLES, OPENMP_WAIT_VARIABLES

CPU = torch.device("cpu")


@pytest.fixture
def trims(monkeypatch):
    """Every :func:`trim_heap` call, counted (the trimmer calls it through the module)."""
    calls: list[int] = []
    monkeypatch.setattr(common, "trim_heap", lambda: calls.append(1))
    return calls


def _sizes(monkeypatch, mib):
    """``resident_bytes`` reads these sizes (MiB) one after the other."""
    it = iter(mib)
    monkeypatch.setattr(common, "resident_bytes", lambda: next(it) * 2**20)


def test_the_trimmer_trims_only_when_the_process_grew_past_its_reference(monkeypatch, trims):
    t = HeapTrimmer(CPU, slack=8 * 2**20)
    # reference 100; within the slack; grown -> trim; the batch after it sets no new reference (back to 101)
    _sizes(monkeypatch, [100, 104, 108, 109, 101, 107, 120])
    assert [t.step() for _ in range(7)] == [False, False, False, True, False, False, True]
    assert len(trims) == 2 and t.reference == 100 * 2**20


def test_live_memory_that_a_trim_cannot_give_back_becomes_the_new_reference(monkeypatch, trims):
    t = HeapTrimmer(CPU, slack=8 * 2**20)
    _sizes(monkeypatch, [100, 150, 150, 155, 158, 170])  # grew by 50 MiB of live memory
    assert [t.step() for _ in range(6)] == [False, True, False, False, False, True]
    assert t.reference == 150 * 2**20 and len(trims) == 2


def test_without_a_slack_or_a_resident_size_every_step_trims_and_a_gpu_model_never(monkeypatch, trims):
    _sizes(monkeypatch, [100] * 3)
    every = HeapTrimmer(CPU, slack=None)
    assert all(every.step() for _ in range(3)) and len(trims) == 3
    monkeypatch.setattr(common, "resident_bytes", lambda: None)
    assert HeapTrimmer(CPU).slack == common.TRIM_SLACK_BYTES
    assert all(HeapTrimmer(CPU).step() for _ in range(3)) and len(trims) == 6
    assert not any(HeapTrimmer(torch.device("cuda")).step() for _ in range(3)) and len(trims) == 6


def test_the_resident_size_is_read_from_the_process():
    """In a fresh process (this one's heap may hold freed memory that a new tensor reuses)."""
    code = (
        "import json; from uae.evaluation.common import resident_bytes as r; a = r(); "
        "b = b'x' * (64 * 2**20); print(json.dumps([a, r()]))"
    )
    before, after = _run(code)
    if before is None:
        pytest.skip("no /proc/self/statm on this OS")
    assert after >= before + 60 * 2**20  # 64 MiB written


@pytest.mark.parametrize("loop", ["encode", "features", "eval"])
def test_the_streaming_loops_trim_only_when_the_process_grew(
    loop, tiny_model, image_folder, tmp_path, monkeypatch, trims
):
    """8 images in batches of 2, a process that grows by 70 MiB per batch (past the default slack): the first
    batch sets the reference, the 2nd and 4th trim (the 3rd follows a trim and moves the reference). A trim
    after every batch would hand back memory the next batch faults in again (uae eval: 0.82x of the model
    without metrics, on 2 CPU cores)."""
    sizes = iter(range(100, 100_000, 70))
    assert common.TRIM_SLACK_BYTES < 70 * 2**20
    monkeypatch.setattr(common, "resident_bytes", lambda: next(sizes) * 2**20)
    if loop == "encode":
        from uae.evaluation.latents import export_latents

        export_latents(
            tiny_model, build_dataset(image_folder, 32), tmp_path / "x", batch_size=2, progress=False
        )
    elif loop == "features":
        from uae.evaluation.features import extract_features

        extract_features(tiny_model, build_dataset(image_folder, 32), band=0, batch_size=2, progress=False)
    else:
        from uae.evaluation.options import RunOptions
        from uae.evaluation.reconstruction import evaluate_dataset

        opts = RunOptions(batch_size=2, num_workers=0, progress=False)
        evaluate_dataset(tiny_model, str(image_folder), metrics={"lpips": False, "fid": False}, options=opts)
    assert len(trims) == 2


def test_a_cpu_evaluation_updates_its_metrics_between_batches_unless_told_otherwise(
    tiny_model, image_folder, monkeypatch
):
    """On the CPU a metrics thread would take the model's cores (measured: no faster on 2 cores), so the
    metrics run between the model's batches there; ``background=True`` still gives the thread."""
    import uae.evaluation.reconstruction as rec
    from uae.evaluation.common import make_loader
    from uae.evaluation.metrics import ReconstructionMetrics

    threads = []
    real = rec.BackgroundUpdates

    class Counted(real):
        def __init__(self, *a, **k):
            threads.append(1)
            super().__init__(*a, **k)

    monkeypatch.setattr(rec, "BackgroundUpdates", Counted)
    ds = build_dataset(image_folder, 32)
    results = []
    for background in (None, True):
        m = ReconstructionMetrics(lpips=False, fid=False)
        out = rec.evaluate_reconstruction(
            tiny_model, make_loader(ds, 4), m, 32, progress=False, background=background
        )
        results.append((out["psnr"], out["ssim"], out["num_images"]))
    assert threads == [1] and results[0] == results[1] and results[0][2] == 8


def _clean_env() -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in OPENMP_WAIT_VARIABLES and k not in MALLOC_VARIABLES and k != "GLIBC_TUNABLES"
    }
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    return env


def _run(code: str, **extra: str) -> dict:
    res = subprocess.run(
        [sys.executable, "-c", code],
        env={**_clean_env(), **extra},
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(res.stdout.strip().splitlines()[-1])


PROBE = """
import json, os, sys
{before}
from uae.hardware import passive_openmp_waits
set_ = passive_openmp_waits()
print(json.dumps({{"set": set_, "policy": os.environ.get("OMP_WAIT_POLICY")}}))
"""


def test_passive_waits_are_set_before_torch_only_and_never_over_the_users_choice():
    assert _run(PROBE.format(before="")) == {"set": True, "policy": "PASSIVE"}
    # after `import torch` the OpenMP runtime has read its settings: nothing to gain, nothing set
    assert _run(PROBE.format(before="import torch")) == {"set": False, "policy": None}
    assert _run(PROBE.format(before=""), OMP_WAIT_POLICY="ACTIVE") == {"set": False, "policy": "ACTIVE"}
    assert _run(PROBE.format(before=""), GOMP_SPINCOUNT="10000") == {"set": False, "policy": None}


CLI = """
import json, os, sys
from uae import cli
for name in sys.argv[1:]:
    try:
        cli.main([name, "--help"])
    except SystemExit:
        pass
print(json.dumps({"policy": os.environ.get("OMP_WAIT_POLICY"), "torch": "torch" in sys.modules}))
"""


@pytest.mark.parametrize(
    ("command", "policy"), [("encode", "PASSIVE"), ("eval", None), ("probe", None), ("models", None)]
)
def test_uae_encode_lets_openmp_threads_sleep_and_the_other_commands_keep_the_default(command, policy):
    res = subprocess.run(
        [sys.executable, "-c", CLI, command], env=_clean_env(), capture_output=True, text=True, check=True
    )
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out == {"policy": policy, "torch": False}  # set (or not) before torch was ever imported


GLIBC = bool(getattr(os, "confstr", lambda _: "")("CS_GNU_LIBC_VERSION"))

CHURN = """
import ctypes, json, sys
from uae.hardware import steady_heap
set_ = steady_heap() if sys.argv[1] == "steady" else None
class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, (ctypes.c_size_t,)
libc.free.argtypes = (ctypes.c_void_p,)
for _ in range(3):  # what a small model's forward does: a few MiB-sized activations made, written, freed
    blocks = [libc.malloc(3 * 2**20) for _ in range(3)]
    for b in blocks:
        ctypes.memset(b, 1, 3 * 2**20)
    for b in blocks:
        libc.free(b)
print(json.dumps({"set": set_, "kept": libc.mallinfo2().keepcost}))
"""


@pytest.mark.skipif(not GLIBC, reason="glibc's malloc thresholds")
def test_a_steady_heap_keeps_freed_memory_for_the_next_blocks_instead_of_giving_it_back():
    default, steady = (
        _run(CHURN.replace("sys.argv[1]", "'default'")),
        _run(CHURN.replace("sys.argv[1]", "'steady'")),
    )
    assert steady["set"] is True
    # glibc's default thresholds give the top of the heap back after every round (the next round faults
    # those pages in again); kept, the 9 MiB freed stay at the top of the heap for the next round
    assert default["kept"] < 2**20
    assert steady["kept"] >= 9 * 2**20


STEADY = """
import json, os
from uae.hardware import steady_heap
print(json.dumps({"set": steady_heap()}))
"""


@pytest.mark.skipif(not GLIBC, reason="glibc's malloc thresholds")
@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, True),
        ({"MALLOC_TRIM_THRESHOLD_": "131072"}, False),
        ({"MALLOC_MMAP_THRESHOLD_": "1048576"}, False),
        ({"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=131072"}, False),
        ({"GLIBC_TUNABLES": "glibc.rtld.optional_static_tls=2048"}, True),  # not a malloc setting
    ],
)
def test_the_heap_thresholds_are_never_set_over_the_users_malloc_settings(env, expected):
    assert _run(STEADY, **env) == {"set": expected}


CLI_HEAP = """
import json, sys
import uae.hardware
calls = []
uae.hardware.steady_heap = lambda: calls.append(1) or True
from uae import cli
for name in sys.argv[1:]:
    try:
        cli.main([name, "--help"])
    except SystemExit:
        pass
print(json.dumps({"calls": len(calls)}))
"""


def test_every_command_runs_with_a_steady_heap():
    res = subprocess.run(
        [sys.executable, "-c", CLI_HEAP, "encode", "eval", "models", "reconstruct"],
        env=_clean_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(res.stdout.strip().splitlines()[-1]) == {"calls": 4}


class _Niceness(torch.utils.data.Dataset):
    """Wraps an image dataset; each sample's label is the niceness of the process that loaded it."""

    def __init__(self, ds):
        self.ds = ds

    def __len__(self):
        return len(self.ds)

    def __getitem__(self, i):
        sample = dict(self.ds[i])
        sample["label"] = os.nice(0)
        return sample


def test_loader_workers_beside_a_cpu_model_yield_to_it_and_gpu_ones_do_not(image_folder):
    from uae.evaluation.common import make_loader
    from uae.hardware import WORKER_NICENESS, worker_init_beside_model

    ds = _Niceness(build_dataset(image_folder, 32))
    parent = os.nice(0)
    want = min(19, parent + WORKER_NICENESS)
    seen = [int(v) for b in make_loader(ds, 4, num_workers=1, device="cpu") for v in b["label"]]
    assert seen == [want] * len(ds) and os.nice(0) == parent  # the workers only
    seen = [
        int(v) for b in make_loader(ds, 4, num_workers=1, device="cpu", worker_niceness=3) for v in b["label"]
    ]
    assert seen == [min(19, parent + 3)] * len(ds)
    assert [int(v) for b in make_loader(ds, 4, num_workers=0, device="cpu") for v in b["label"]] == [
        parent
    ] * 8
    assert worker_init_beside_model("cuda") is None and worker_init_beside_model("cpu", 0) is None
    assert make_loader(ds, 4, num_workers=1).worker_init_fn is None  # model's device unknown: left alone


def test_the_export_loader_workers_yield_to_a_cpu_model(tiny_model, image_folder, tmp_path):
    from safetensors.torch import load_file

    from uae.evaluation.latents import export_latents
    from uae.hardware import WORKER_NICENESS

    ds = _Niceness(build_dataset(image_folder, 32))
    parent = os.nice(0)
    kw = dict(what=("latent",), shard_size=8, batch_size=4, num_workers=1, progress=False)
    export_latents(tiny_model, ds, tmp_path / "a", **kw)
    export_latents(tiny_model, ds, tmp_path / "b", worker_niceness=0, **kw)
    labels = {k: load_file(str(tmp_path / k / "shard-00000.safetensors"))["label"].tolist() for k in "ab"}
    assert labels == {"a": [min(19, parent + WORKER_NICENESS)] * 8, "b": [parent] * 8}


@pytest.mark.parametrize("bad", [-1, 20])
def test_worker_niceness_outside_0_19_is_refused(bad):
    from uae.errors import InputError
    from uae.evaluation.options import RunOptions

    with pytest.raises(InputError, match="worker_niceness") as e:
        RunOptions(worker_niceness=bad)
    assert e.value.param == "worker_niceness"
