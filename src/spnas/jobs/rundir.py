"""Run directories and output files: what spnas may create, replace or delete, and one writer at a time.

Why this module exists: ``--force`` used to ``rmtree`` whatever ``--out`` named, so ``--out .`` or
``--out ''`` deleted the user's own files. Now a directory is emptied only when spnas created it (it
holds :data:`MARKER`), never when it is the current directory, one of its ancestors, the home
directory or the root, and never while another spnas process writes to it (:class:`RunLock`).
"""

from __future__ import annotations

import errno
import os
import shutil
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from spnas.errors import SpnasError

try:  # POSIX only; elsewhere runs are not locked (said in README)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

#: written into every run directory spnas creates; ``--force`` empties only directories that hold it
MARKER = ".spnas-run"
#: the lock file of a run directory; it holds the PID of the process that writes there
LOCK = ".spnas.lock"
#: what :func:`spnas.outputs.files.atomic_path` leaves behind when a process is killed mid-write
STALE_TMP_GLOB = ".*.tmp"


def _protected(path: Path) -> str | None:
    """Why ``path`` must never be a run directory (or None when it may be one)."""
    p = path.resolve()
    cwd = Path.cwd().resolve()
    if p == cwd:
        return "it is the current directory"
    if p in cwd.parents:
        return "it contains the current directory"
    if p == Path.home().resolve():
        return "it is your home directory"
    if p == Path(p.anchor):
        return "it is the file-system root"
    return None


def checked_out_path(out: str | os.PathLike, what: str = "--out") -> Path:
    """``out`` as a Path (``~`` expanded, as in a config file), refusing an empty name (which would
    mean the current directory)."""
    if not str(out).strip():
        raise SpnasError(f"{what} is empty; name a new directory, e.g. {what} runs/my-run")
    return Path(out).expanduser()


def check_new_run_dir(out: str | os.PathLike, force: bool) -> Path:
    """Everything :func:`run_directory` would refuse for a new run, checked before any work starts."""
    out = checked_out_path(out)
    why = _protected(out)
    if why:
        raise SpnasError(f"{out}: cannot be a run directory: {why}; name a new directory, e.g. --out runs/my-run")
    if out.exists() and not out.is_dir():
        raise SpnasError(f"{out}: exists and is not a directory; choose another --out")
    entries = _entries(out)
    if entries and not force:
        raise SpnasError(f"{out}: run directory is not empty; resume it with --resume {out}, "
                         "choose another --out, or pass --force to start over")
    if entries and not (out / MARKER).is_file():
        raise SpnasError(f"{out}: --force refused: spnas did not create this directory (no {MARKER} in it) and "
                         f"it holds {len(entries)} entries, e.g. {entries[0].name!r}; move them away or choose another --out")
    return out


def _entries(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    return sorted(e for e in directory.iterdir() if e.name != LOCK)


@contextmanager
def run_directory(out: str | os.PathLike, *, resume: bool = False, force: bool = False) -> Iterator[Path]:
    """The run directory, locked for this process while the block runs.

    New run: created (or, with ``force``, emptied if spnas made it) and marked. Resume: it must
    exist; files a killed process left half-written are removed.
    """
    out = Path(out).expanduser() if resume else check_new_run_dir(out, force)
    if resume and not out.is_dir():
        raise SpnasError(f"{out}: no such run directory to resume")
    if not resume:
        out.mkdir(parents=True, exist_ok=True)
    with RunLock(out):
        if resume:
            remove_stale_tmp(out)
        else:
            entries = _entries(out)  # checked above: only spnas's own directories get here
            if entries:
                print(f"spnas: note: --force: emptied {out} ({len(entries)} entries of an earlier spnas run)",
                      file=sys.stderr)
            for entry in entries:
                shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
            (out / MARKER).write_text("created by spnas; 'spnas ... --force' may empty this directory\n")
        yield out


def remove_stale_tmp(directory: Path) -> int:
    """Delete the ``.NAME.XXXX.tmp`` files of atomic writes that never finished."""
    stale = [p for p in directory.glob(STALE_TMP_GLOB) if p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return len(stale)


class RunLock:
    """An exclusive ``flock`` on ``DIR/.spnas.lock``, holding this process's PID.

    The kernel drops the lock when the process exits, however it exits (kill -9 included), so a
    lock file left behind by a dead process is never in the way: its PID is only used to name the
    live process in the refusal.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.fd: int | None = None

    def __enter__(self) -> "RunLock":
        if fcntl is None:  # pragma: no cover
            return self
        fd = os.open(self.directory / LOCK, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(fd)
            if err.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            raise SpnasError(f"{self.directory}: in use by another spnas process ({holder(self.directory)}); "
                             "wait for it to finish or stop it first") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor releases the flock
            self.fd = None


def holder(directory: Path) -> str:
    """'PID 123: spnas train ...' for the process named in the lock file, as far as it can be read."""
    try:
        pid = int((directory / LOCK).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return "PID unknown"
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        cmd = ""
    return f"PID {pid}: {cmd}" if cmd else f"PID {pid}"


def check_output_file(path: str | os.PathLike, force: bool, option: str = "--out") -> Path:
    """An output file that may be written: not empty, not a directory, not replaced without ``force``."""
    path = checked_out_path(path, option)
    if path.is_dir():
        raise SpnasError(f"{path}: is a directory; {option} names the file to write")
    if path.exists() and not force:
        raise SpnasError(f"{path}: exists; pass --force to replace it or choose another {option}")
    if path.parent.exists() and not path.parent.is_dir():
        raise SpnasError(f"{path.parent}: is not a directory")
    _check_writable(next(p for p in (path.parent, *path.parent.parents) if p.exists()), path)
    return path


def _check_writable(directory: Path, path: Path) -> None:
    """Refuse before any work a destination whose nearest existing directory cannot be written (a
    profile that runs for minutes must not fail only when it saves). Tried, not inferred from the
    mode bits: root, ACLs and read-only mounts all decide differently."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".spnas-write-check-", dir=directory)
    except OSError as err:
        raise SpnasError(f"{path}: cannot write in {directory} ({err.strerror or type(err).__name__}); "
                         "choose another destination") from None
    os.close(fd)
    os.unlink(probe)
