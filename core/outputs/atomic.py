"""Every file a run writes goes through here: a temporary name in the same folder, fsync, then a rename.

A reader (or a crash, or a full disk) therefore sees either the previous complete file or the new
complete file under the final name, never a partial one: the temporary file is removed when
writing fails. A full disk (or quota) becomes a ``DiskFullError`` naming the path, which the CLI
prints and exits 2 on.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from selectivity_eval.core.errors import DiskFullError

NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def no_space(error: BaseException) -> bool:
    return isinstance(error, OSError) and error.errno in NO_SPACE


def disk_full(path: Path, needed: int | None = None) -> DiskFullError:
    """The error for a write to ``path`` that found no space; ``needed`` bytes when known."""
    try:
        free = shutil.disk_usage(Path(path).parent).free
    except OSError:
        free = None
    sizes = f" It needs {needed:,} bytes." if needed is not None else ""
    sizes += f" {free:,} bytes are free there." if free is not None else ""
    return DiskFullError(
        f"No space left on the device writing {path}.{sizes} Free some space (or choose another `output`) "
        "and run again; nothing already complete was overwritten."
    )


@contextmanager
def atomic_file(path: Path | str, mode: str = "w", *, durable: bool = True, **open_args: Any) -> Iterator[IO]:
    """An open file whose content appears at ``path`` only when the block ends without an error.

    ``durable=False`` skips the two fsyncs (the file's and its directory's): still atomic for every
    reader, but not guaranteed on disk after a power loss; for files that are cheap to rebuild and
    written by the hundred (the report's figures: ``selectivity-eval report`` rebuilds them)."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, mode, **open_args) as handle:
            yield handle
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException as error:
        temporary.unlink(missing_ok=True)
        if no_space(error):
            raise disk_full(path) from None
        raise
    if durable:
        _sync_directory(path.parent)


def _sync_directory(directory: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where directories cannot be opened."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def write_text(path: Path | str, text: str) -> None:
    with atomic_file(path, "w", encoding="utf-8", newline="") as handle:
        handle.write(text)


def write_bytes(path: Path | str, data: bytes) -> None:
    with atomic_file(path, "wb") as handle:
        handle.write(data)


def write_with(path: Path | str, writer: Callable[[IO[bytes]], Any], *, durable: bool = True) -> None:
    """``writer(handle)`` into a binary file that appears at ``path`` once complete (np.save, PIL, savefig)."""
    with atomic_file(path, "wb", durable=durable) as handle:
        writer(handle)
