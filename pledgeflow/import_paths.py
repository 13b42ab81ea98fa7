"""Which files an import may read: a regular file, and inside PLEDGEFLOW_IMPORT_ROOT when set.

A run of the import-file deployment (anyone who can start one chooses the path) must have the
root; the CLI on a person's own machine reads what that person can, within the root if set.
Every check runs on the resolved path (symlinks and `..` followed) before a byte is read.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from pledgeflow.settings import get_settings

FILE_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


class ImportPathError(ValueError):
    """A path an import refuses to read; nothing was read or stored."""

    def __init__(self, code: str, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.hint = hint


def _kind(mode: int) -> str:
    return next((name for test, name in FILE_KINDS if test(mode)), "not a file")


def resolve_import_path(path: str | Path, *, root_required: bool = False) -> Path:
    """The real path of a file an import may read, or an ImportPathError saying why not.

    With a root, a relative path is taken inside it, and the resolved path must stay there.
    """
    root = get_settings().import_root
    if root is None and root_required:
        raise ImportPathError(
            "import_root_required",
            "this import-file run reads files only under PLEDGEFLOW_IMPORT_ROOT, "
            "which the worker's environment does not set",
            "set PLEDGEFLOW_IMPORT_ROOT on the worker to the folder exports are placed in",
        )
    candidate = Path(path)
    if root is not None and not candidate.is_absolute():
        candidate = root / candidate
    try:
        resolved = candidate.resolve()
        if root is not None and not resolved.is_relative_to(root.resolve()):
            # Said before anything about the file, so the answer tells nothing about it.
            raise ImportPathError(
                "outside_import_root",
                f"{path} is outside PLEDGEFLOW_IMPORT_ROOT ({root})",
                "place the file under the import root and give its path there",
            )
        mode = resolved.stat().st_mode
    except FileNotFoundError:
        raise ImportPathError("file_not_found", f"no such file: {path}") from None
    except (OSError, RuntimeError) as exc:  # a symlink loop, a path component not a folder
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "cannot resolve it"
        raise ImportPathError("unreadable_path", f"cannot read {path}: {reason}") from None
    if not stat.S_ISREG(mode):
        raise ImportPathError(
            "not_a_regular_file",
            f"{path} is not a regular file ({_kind(mode)})",
            "give the path of a CSV file",
        )
    if not os.access(resolved, os.R_OK):
        raise ImportPathError("permission_denied", f"cannot read {path}: permission denied")
    return resolved
