"""Training checkpoints: no pickle runs (local or URL ``--ckpt_path``), none is lost (atomic writes, SIGKILL
between write and rename), SIGTERM saves one and exits non-zero."""

from __future__ import annotations

import functools
import http.server
import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from conftest import cpu_trainer

from uae.cli import main
from uae.data import UAEDataModule
from uae.errors import DamagedFileError, MissingFileError, UnsafeFileError
from uae.training import Stage1DecoderModule, Stage3GANModule
from uae.training.callbacks import SaveOnSigterm
from uae.training.callbacks.checkpoints import SIGTERM_EXIT
from uae.training.checkpoint_io import AtomicCheckpointIO, read_checkpoint, save_checkpoint_atomically

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
FINETUNE = str(RECIPES / "finetune_folder.yaml")

pytestmark = [
    pytest.mark.usefixtures("cli_one_thread"),
    pytest.mark.filterwarnings("ignore:Checkpoint directory .* exists and is not empty"),
]


class _Payload:
    """Unpickling this runs ``exec`` (what a malicious checkpoint does), which creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').close()",))


def payload_checkpoint(path: Path, marker: Path) -> Path:
    torch.save({"state_dict": {}, "global_step": 0, "hyper_parameters": {"x": _Payload(marker)}}, path)
    return path


def tiny_args(root: Path, out: Path, start: Path, *more: str) -> list[str]:
    args = ["--config", FINETUNE, "--model.pretrained", str(start), "--model.log_images_every_n_steps", "0"]
    args += ["--data.root", str(root), "--data.batch_size", "2", "--data.num_workers", "0"]
    args += ["--data.val_fraction", "0.25", "--trainer.accelerator", "cpu", "--trainer.precision", "32"]
    args += ["--trainer.max_steps", "2", "--trainer.default_root_dir", str(out)]
    args += ["--trainer.limit_val_batches", "1", "--trainer.enable_progress_bar", "false"]
    args += ["--trainer.num_sanity_val_steps", "0"]
    return [*args, *more]


def one_line_error(capsys) -> str:
    err = [line for line in capsys.readouterr().err.strip().splitlines() if not line.startswith("INFO ")]
    assert len(err) == 1, err
    return err[0]


# ------------------------------------------------------------------------------------ no pickle runs
@pytest.mark.parametrize("command", ["fit", "validate"])
def test_local_pickle_ckpt_path_is_refused_in_one_line_and_never_runs(
    command, image_folder, start, tmp_path, capsys
):
    marker = tmp_path / "PAYLOAD_RAN"
    evil = payload_checkpoint(tmp_path / "evil.ckpt", marker)
    args = tiny_args(image_folder, tmp_path / "run", start, "--ckpt_path", str(evil))
    assert main([command, *args]) == 2
    line = one_line_error(capsys)
    assert line.startswith(f"uae {command}: error: ") and "evil.ckpt" in line and "(exec)" in line, line
    assert "pickled" in line and not marker.exists()


def test_read_checkpoint_errors_are_one_line(tmp_path):
    marker = tmp_path / "PAYLOAD_RAN"
    with pytest.raises(UnsafeFileError, match=r"\(exec\)"):
        read_checkpoint(payload_checkpoint(tmp_path / "evil.ckpt", marker))
    assert not marker.exists()
    (tmp_path / "empty.ckpt").write_bytes(b"")
    with pytest.raises(DamagedFileError, match="truncated"):
        read_checkpoint(tmp_path / "empty.ckpt")
    good = tmp_path / "good.ckpt"
    torch.save({"state_dict": {"w": torch.ones(3)}, "hyper_parameters": {"root": Path("/data")}}, good)
    good.write_bytes(good.read_bytes()[:-50])  # cut short
    with pytest.raises(DamagedFileError):
        read_checkpoint(good)
    with pytest.raises(MissingFileError):
        read_checkpoint(tmp_path / "nope.ckpt")


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # no request lines on stderr
        pass


@pytest.fixture
def http_folder(tmp_path):
    """``(folder, base_url)``: a local HTTP server over a temp folder."""
    folder = tmp_path / "served"
    folder.mkdir()
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_Quiet, directory=str(folder))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_url_ckpt_path_is_downloaded_then_read_safely(
    image_folder, start, tmp_path, http_folder, monkeypatch, capsys
):
    folder, base = http_folder
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))  # where torch.hub would cache a download
    monkeypatch.setattr("uae.training.checkpoint_io.offline", lambda: False)
    marker = tmp_path / "PAYLOAD_RAN"
    payload_checkpoint(folder / "evil.ckpt", marker)
    args = tiny_args(image_folder, tmp_path / "run", start)

    # The payload: refused in one line, never run (Lightning alone would torch.load it with weights_only off).
    rc = main(["validate", *args, "--ckpt_path", f"{base}/evil.ckpt"])
    assert not marker.exists(), "the payload ran"
    assert rc == 2
    line = one_line_error(capsys)
    assert f"{base}/evil.ckpt" in line and "(exec)" in line, line

    # A real checkpoint over HTTP validates (downloaded to a temp file, read with weights_only=True).
    assert main(["fit", *args, "--trainer.max_steps", "1"]) == 0
    (folder / "last.ckpt").write_bytes((tmp_path / "run" / "checkpoints" / "last.ckpt").read_bytes())
    capsys.readouterr()
    assert main(["validate", *args, "--ckpt_path", f"{base}/last.ckpt"]) == 0

    # Offline: refused in one line, nothing fetched.
    monkeypatch.setattr("uae.training.checkpoint_io.offline", lambda: True)
    capsys.readouterr()
    assert main(["validate", *args, "--ckpt_path", f"{base}/last.ckpt"]) == 2
    assert "offline" in one_line_error(capsys)


def test_weights_only_false_is_refused(image_folder, start, tmp_path, capsys):
    args = tiny_args(image_folder, tmp_path / "run", start, "--weights_only", "false")
    assert main(["fit", *args]) == 2
    assert "weights_only" in one_line_error(capsys)


def test_lightning_loads_with_weights_only_through_the_atomic_io(tmp_path):
    io = AtomicCheckpointIO()
    marker = tmp_path / "PAYLOAD_RAN"
    with pytest.raises(UnsafeFileError):
        io.load_checkpoint(payload_checkpoint(tmp_path / "evil.ckpt", marker))  # weights_only=None asked
    with pytest.raises(ValueError, match="weights_only=True only"):
        io.load_checkpoint(tmp_path / "evil.ckpt", weights_only=bool(0))  # asked to run pickles
    assert not marker.exists()


def test_checkpoints_with_paths_in_hyperparameters_load_with_weights_only(image_folder, tmp_path):
    torch.manual_seed(0)
    module = Stage1DecoderModule(
        model_name="uae_test", export_dir=tmp_path / "export", log_images_every_n_steps=0
    )
    trainer = cpu_trainer(
        tmp_path,
        1,
        [pl.callbacks.ModelCheckpoint(dirpath=str(tmp_path / "ckpt"), save_last=True)],
        num_sanity_val_steps=2,
    )
    trainer.fit(module, UAEDataModule(image_folder, batch_size=2, num_workers=0, val_fraction=0.0))
    ck = torch.load(tmp_path / "ckpt" / "last.ckpt", map_location="cpu", weights_only=True)  # no allowlist
    assert ck["hyper_parameters"]["export_dir"] == str(tmp_path / "export")
    assert ck["datamodule_hyper_parameters"]["root"] == str(image_folder)


# -------------------------------------------------------------------------------- no checkpoint lost
def test_atomic_save_failure_between_write_and_rename_keeps_the_previous_file(tmp_path, monkeypatch):
    other_tmp = tmp_path / "system_tmp"
    other_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(other_tmp))  # where Lightning's writer stages files
    target = tmp_path / "ckpt" / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"global_step": 1, "w": torch.ones(1000)}, target)

    def fail(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="No space left"):
        io.save_checkpoint({"global_step": 2, "w": torch.zeros(1000)}, target)
    monkeypatch.undo()
    assert read_checkpoint(target)["global_step"] == 1  # the previous file, whole
    assert sorted(p.name for p in target.parent.iterdir()) == ["last.ckpt"]  # no temp left behind
    assert not list(other_tmp.iterdir())  # nothing staged outside the target folder
    save_checkpoint_atomically({"global_step": 3}, target)
    assert read_checkpoint(target)["global_step"] == 3 and oct(target.stat().st_mode & 0o777) != "0o600"


_KILL_CHILD = textwrap.dedent(
    """
    import json, os, signal, sys
    ckpt_dir, root, events_path = sys.argv[1], sys.argv[2], sys.argv[3]
    final = os.path.join(ckpt_dir, "last.ckpt")
    seen = {"renames": 0}

    def note(kind, detail):
        with open(events_path, "a") as f:
            f.write(json.dumps([kind, detail]) + "\\n")

    def hook(event, args):
        if event == "open" and isinstance(args[0], str) and os.path.abspath(args[0]) == final:
            mode, flags = args[1], args[2] or 0
            if (mode and any(c in mode for c in "wax+")) or flags & (os.O_WRONLY | os.O_RDWR):
                note("in-place write", args[0])  # the final file opened for writing: not atomic
        elif event in ("os.rename", "os.replace") and os.path.abspath(str(args[1])) == final:
            src = os.path.abspath(str(args[0]))
            if os.path.dirname(src) != ckpt_dir:
                note("rename from another folder", src)
            seen["renames"] += 1
            if seen["renames"] == 2:  # the second save: killed with its temp file written, not yet renamed
                note("killed", src)
                os.kill(os.getpid(), signal.SIGKILL)

    import lightning.pytorch as pl, torch
    from uae.data import UAEDataModule
    from uae.training import Stage1DecoderModule
    torch.manual_seed(0)
    module = Stage1DecoderModule(model_name="uae_test", ema_decay=0.9, log_images_every_n_steps=0)
    trainer = pl.Trainer(
        max_steps=3, accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
        limit_val_batches=0, default_root_dir=os.path.dirname(ckpt_dir),
        callbacks=[pl.callbacks.ModelCheckpoint(dirpath=ckpt_dir, every_n_train_steps=1, save_last=True,
                                                save_top_k=0)],
    )
    sys.addaudithook(hook)
    trainer.fit(module, UAEDataModule(root, batch_size=2, num_workers=0, val_fraction=0.0))
    """
)


def _other_file_system(tmp_path: Path) -> Path | None:
    """A temp folder on another file system than ``tmp_path`` (``/dev/shm``), if this machine has one."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK) and shm.stat().st_dev != tmp_path.stat().st_dev:
        return Path(tempfile.mkdtemp(dir=shm))
    return None


def test_sigkill_while_saving_leaves_last_ckpt_whole(image_folder, tmp_path):
    """A real SIGKILL in the middle of a save, with the system temp folder on another file system when
    there is one (where Lightning's own writer copied the file over ``last.ckpt``)."""
    ckpt_dir = tmp_path / "run" / "ckpt"
    events = tmp_path / "events.jsonl"
    script = tmp_path / "child.py"
    script.write_text(_KILL_CHILD)
    elsewhere = _other_file_system(tmp_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    if elsewhere is not None:
        env["TMPDIR"] = str(elsewhere)
    try:
        proc = subprocess.run(
            [sys.executable, str(script), str(ckpt_dir), str(image_folder), str(events)],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        if elsewhere is not None:
            left = list(elsewhere.iterdir())
            subprocess.run(["rm", "-rf", str(elsewhere)], check=False)
    log = [json.loads(line) for line in events.read_text().splitlines()] if events.exists() else []
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, proc.stderr[-2000:], log)
    assert [kind for kind, _ in log] == ["killed"], log  # never written in place, never staged elsewhere
    if elsewhere is not None:
        assert not left, left
    ck = read_checkpoint(ckpt_dir / "last.ckpt")  # the previous checkpoint, whole
    assert ck["global_step"] == 1
    # The killed write's temp file is cleared by the next save of the same name.
    assert len(list(ckpt_dir.glob(".tmp*"))) == 1
    save_checkpoint_atomically(ck, ckpt_dir / "last.ckpt")
    assert sorted(p.name for p in ckpt_dir.iterdir()) == ["last.ckpt"]


# ---------------------------------------------------------------------------------------------- SIGTERM
class SigtermAt(pl.Callback):
    """Sends this process a SIGTERM during training step ``step`` (only while Lightning handles it)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            handler = signal.getsignal(signal.SIGTERM)
            assert handler not in (signal.SIG_DFL, signal.SIG_IGN, None), (
                "Lightning's handler is not installed"
            )
            os.kill(os.getpid(), signal.SIGTERM)


def _stage3(root: Path, out: Path, max_steps: int, extra=(), ckpt_path=None):
    torch.manual_seed(0)
    module = Stage3GANModule(
        model_name="uae_test", ema_decay=0.9, log_images_every_n_steps=0, lr=1e-3, disc_start=1
    )
    trainer = cpu_trainer(
        out,
        max_steps,
        [pl.callbacks.ModelCheckpoint(dirpath=str(out / "ckpt"), every_n_train_steps=100), *extra],
    )
    trainer.fit(
        module,
        UAEDataModule(str(root), batch_size=2, num_workers=0, val_fraction=0.0, seed=3),
        ckpt_path=ckpt_path,
    )
    return module, trainer


def test_sigterm_saves_a_checkpoint_exits_143_and_resumes_exactly(image_folder, tmp_path):
    full, _ = _stage3(image_folder, tmp_path / "full", 6)
    with pytest.raises(SystemExit) as stopped:
        _stage3(image_folder, tmp_path / "cut", 6, extra=[SigtermAt(2)])
    assert stopped.value.code == SIGTERM_EXIT  # Lightning's own SIGTERMException would exit 0
    last = tmp_path / "cut" / "ckpt" / "last.ckpt"
    assert read_checkpoint(last)["global_step"] == 3  # the batch that was running when it came finished
    resumed, trainer = _stage3(image_folder, tmp_path / "cut", 6, ckpt_path=str(last))
    assert trainer.global_step == 6
    for (name, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


def test_uae_fit_exits_143_on_sigterm(image_folder, start, tmp_path):
    """``uae fit ... && next`` must not go on after a SIGTERM: exit status 143, with ``last.ckpt`` written."""
    out = tmp_path / "run"
    args = tiny_args(image_folder, out, start, "--trainer.max_steps", "50")
    args += ["--trainer.callbacks+=test_checkpoints.SigtermAt", "--trainer.callbacks.step", "1"]
    assert main(["fit", *args]) == SIGTERM_EXIT
    assert read_checkpoint(out / "checkpoints" / "last.ckpt")["global_step"] == 2
    assert not (out / "export").exists()  # a stopped run is not exported as if it had finished


def test_save_on_sigterm_is_attached_by_every_stage():
    module = Stage1DecoderModule(model_name="uae_test", ema_decay=0.9)
    names = [type(c).__name__ for c in module.configure_callbacks()]
    assert names.index("SaveOnSigterm") > names.index("EMAUpdate")  # saves that step's EMA
    assert isinstance(module.configure_callbacks()[-1], SaveOnSigterm)
