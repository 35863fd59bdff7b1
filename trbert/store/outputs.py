"""What a run writes besides model weights: the atomic-write helper; per-row stage files (token scores, teacher logits,
rank targets: ``.npy`` written row by row through a memory map, with a ``.json`` sidecar naming the dataset and model
they came from, docs/differences.md F6), checked on reading; ``eval_results.json`` and prediction files; the lock
keeping two runs out of one output directory; the clean-up of what an interrupted or replaced run left.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path

import numpy as np

from ..errors import InputError

logger = logging.getLogger(__name__)

LOCK = ".trbert.lock"
# what a training run writes into its output directory besides the model (removed when replaced)
RUN_OUTPUTS = ("checkpoint-*", "runs", "selector_health.json", "eval_results*.json", "predictions*.json",
               "null_odds*.json")  # fmt: skip
STAGE_FILES = ("token_scores", "teacher_logits", "token_ranks")


def file_digest(path: Path) -> str:
    """sha256 of a file; of a folder (RACE's splits): of its files' names and digests."""
    path, h = Path(path), hashlib.sha256()
    if path.is_dir():
        for item in sorted(p for p in path.rglob("*") if p.is_file()):
            h.update(f"{item.relative_to(path)}:{file_digest(item)}\n".encode())
    else:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


@contextlib.contextmanager
def writing(path):
    """An I/O error (a full disk, no permission) while writing ``path`` becomes one message."""
    try:
        yield
    except OSError as e:
        raise InputError(
            f"{path}: could not be written ({e.strerror or e}); what was saved before is unchanged"
        ) from None


def atomic_write(path, write) -> None:
    """``write(binary file)`` into a temporary file next to ``path``, renamed to ``path``: never seen half-written."""
    path = Path(path)
    with writing(path):
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                write(f)
            os.replace(tmp, path)
        finally:
            Path(tmp).unlink(missing_ok=True)


def write_json(path, obj) -> None:
    atomic_write(path, lambda f: f.write(json.dumps(obj, indent=2).encode()))


def read_json(path, what: str) -> dict:
    """A JSON file we or the user wrote; one clear error when it is not JSON."""
    try:
        return json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: not a valid {what} (not JSON: {e})") from None


def write_results(folder, report: dict, predictions=None, variant: str = "") -> None:
    """``eval_results.json`` and the task's prediction files in ``folder``; another evaluation of the
    same model (``variant``: int8, test, ...) writes ``eval_results_<variant>.json`` and so on."""
    suffix = f"_{variant}" if variant else ""
    for name, content in (predictions.files if predictions is not None else {}).items():
        write_json(Path(folder) / name.replace(".json", f"{suffix}.json"), content)
    write_json(Path(folder) / f"eval_results{suffix}.json", report)


class StageFile:
    """A stage file being written: ``array`` is a memory-mapped ``.npy`` under a temporary name that
    :meth:`commit` renames into place with its sidecar (rank 0 only; the others hold ``None``)."""

    def __init__(self, path, shape: tuple[int, ...]):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with writing(self.path):
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npy", dir=self.path.parent)
            os.close(fd)
            self.tmp = Path(tmp)
            self.array = np.lib.format.open_memmap(self.tmp, mode="w+", dtype=np.float32, shape=shape)
            try:  # the room taken now (the map is sparse): a full disk is a message here, not a crash later
                with open(self.tmp, "r+b") as f:
                    getattr(os, "posix_fallocate", lambda *_: None)(f.fileno(), 0, self.tmp.stat().st_size)
            except OSError:
                self.discard()
                raise

    def commit(self, meta: dict) -> None:
        self.array.flush()
        if (bad := first_non_finite(self.array)) is not None:
            self.discard()
            raise InputError(f"{self.path}: row {bad} came out NaN or infinite; nothing written (is the model finite?)")
        meta = {**meta, "shape": list(self.array.shape), "dtype": str(self.array.dtype)}
        del self.array
        self.path.with_suffix(".json").unlink(missing_ok=True)  # never the old file's sidecar beside the new one
        os.replace(self.tmp, self.path)
        write_json(self.path.with_suffix(".json"), meta)
        logger.info("wrote %s %s", self.path, tuple(meta["shape"]))

    def discard(self) -> None:
        self.tmp.unlink(missing_ok=True)


def load_array(path, fingerprint: dict, artifact, shape: tuple | None = None, model: str | None = None) -> np.ndarray:
    """Open a stage file memory-mapped and check it: made for this dataset (same rows, same features), of the expected
    ``shape`` and, where known, made by the expected ``model`` (the digest of its weights)."""
    path, what, again = Path(path), artifact.filename, f"make it again with {artifact.made_by}"
    sidecar = path.with_suffix(".json")
    if not path.is_file():
        raise InputError(f"{path}: {what} not found; it is made by {artifact.made_by}")
    try:
        array = np.load(path, allow_pickle=False, mmap_mode="r")
        meta = read_json(sidecar, f"{what} sidecar") if sidecar.is_file() else {}
    except (ValueError, OSError) as e:
        raise InputError(f"{path}: not a readable {what} file ({e})") from None
    made_for = meta.get("dataset", {})
    for key in fingerprint:
        if key in made_for and made_for[key] != fingerprint[key]:
            raise InputError(
                f"{path}: {what} made for another dataset ({key} differs: {made_for[key]} vs {fingerprint[key]}); {again}"
            )
    if shape is not None and array.shape[0] != shape[0]:
        raise InputError(f"{path}: {what} has {array.shape[0]} rows but the training set has {shape[0]} examples")
    if shape is not None and tuple(array.shape) != tuple(shape):
        raise InputError(f"{path}: {what} has shape {tuple(array.shape)}, expected {tuple(shape)}")
    if model and meta.get("model_sha256") and meta["model_sha256"] != model:
        raise InputError(
            f"{path}: {what} was made by another model than the one it belongs to (its weights changed since); {again}"
        )
    if (bad := first_non_finite(array)) is not None:
        raise InputError(f"{path}: {what} holds NaN or infinite values (row {bad}); {again}")
    return array


def first_non_finite(array: np.ndarray, rows: int = 4096) -> int | None:
    """The first row of ``array`` holding a NaN or an infinity (read a block of rows at a time), or None."""
    for start in range(0, len(array), rows):
        finite = np.isfinite(array[start : start + rows]).reshape(min(rows, len(array) - start), -1).all(1)
        if not finite.all():
            return start + int(np.argmin(finite))
    return None


class OutputLock:
    """``output_dir/.trbert.lock`` holding the owner's pid and host while a run writes there; a
    second run is refused while the owner lives, and a lock whose owner died is taken over."""

    def __init__(self, folder):
        self.folder, self.path, self.held = Path(folder), Path(folder) / LOCK, False

    def __enter__(self):
        for _ in range(2):
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                self._take_over_if_stale()
                continue
            except OSError as e:
                raise InputError(f"{self.folder}: cannot write into the output directory ({e.strerror})") from None
            try:
                with os.fdopen(fd, "w") as f:
                    json.dump({"pid": os.getpid(), "host": socket.gethostname()}, f)
            except OSError as e:  # (a full disk): no empty lock left behind
                self.path.unlink(missing_ok=True)
                raise InputError(f"{self.folder}: cannot write into the output directory ({e.strerror})") from None
            self.held = True
            return self
        raise InputError(f"{self.folder}: another run is using this output directory ({self.path})")

    def _take_over_if_stale(self) -> None:
        owner = {}
        try:
            owner = json.loads(self.path.read_text())
        except FileNotFoundError:  # released meanwhile: try again
            return
        except json.JSONDecodeError:  # empty or cut short (killed while made): stale once older than a minute
            with contextlib.suppress(OSError):
                owner = {"host": socket.gethostname()} if time.time() - self.path.stat().st_mtime > 60 else {}
        except OSError:  # not ours to read
            pass
        if owner.get("host") == socket.gethostname() and not _alive(owner.get("pid", -1)):
            logger.warning(
                "%s: taking over the lock of process %s, which no longer runs", self.folder, owner.get("pid")
            )
            self.path.unlink(missing_ok=True)
            return
        raise InputError(
            f"{self.folder}: another run (pid {owner.get('pid')} on {owner.get('host')}) is using this output directory"
        )

    def __exit__(self, *exc):
        if self.held:
            self.path.unlink(missing_ok=True)
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return pid > 0


def clean_leftovers(folder) -> None:
    """Remove what a killed save left here: ``.saving-*`` folders and ``.tmp-*`` files (called under the lock)."""
    folder = Path(folder)
    for tmp in [*folder.glob(".saving-*"), *folder.parent.glob(f".saving-{folder.name}~*"), *folder.glob(".tmp-*")]:
        shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)
        logger.warning("removed %s, left by a save that did not finish", tmp)


def replace_run(folder) -> None:
    """``--overwrite_output_dir`` for training: what the earlier run wrote (its step checkpoints, TensorBoard scalars,
    results and the stage files made from its model) is removed, so nothing of it is mistaken for the new run's."""
    folder = Path(folder)
    doomed = [p for pattern in RUN_OUTPUTS for p in folder.glob(pattern)]
    doomed += [p for name in STAGE_FILES for p in (folder / f"{name}.npy", folder / f"{name}.json") if p.exists()]
    for path in doomed:
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    if doomed:
        logger.info("%s: removed %d outputs of the run being replaced", folder, len(doomed))
