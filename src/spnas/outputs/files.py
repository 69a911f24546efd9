"""File helpers that never leave a half-written file behind (write to a temp file, then rename)."""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from spnas.errors import SpnasError


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path next to ``path``; rename it over ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a finished file follows the umask like open()
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def read_json(path: str | Path, what: str = "file") -> Any:
    """Load JSON or fail with one line that names the file and the problem."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise SpnasError(f"{path}: no such {what}") from None
    except IsADirectoryError:
        raise SpnasError(f"{path}: is a directory, expected {'an' if what[0] in 'aeiou' else 'a'} {what}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise SpnasError(f"{path}: corrupt {what}, not valid JSON ({err})") from None
