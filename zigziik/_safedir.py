"""Folders held open: files made, moved and removed in them by name, never through a link.

A check by path (``lstat``, then ``open``) leaves a window in which a folder can be swapped for
a symbolic link. A `SafeFolder` is an open directory: every operation in it passes
``dir_fd=``, and a child folder is opened with ``O_NOFOLLOW``, so what is written lands in the
folder that was checked, whatever happens to the paths meanwhile. It also spares the kernel
a walk of the whole path for every file.

The descriptor is closed when the last reference goes (a file still being written keeps its
folder open). Where the platform has no ``dir_fd`` (Windows), the same calls go by path,
after an ``lstat`` of each folder.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path

from .errors import ZigziikError

__all__ = ["DIR_FDS", "SafeFolder", "UnsafePathError"]

DIR_FDS = (
    hasattr(os, "O_DIRECTORY")
    and hasattr(os, "O_NOFOLLOW")
    and {os.open, os.mkdir, os.unlink, os.rmdir, os.rename, os.stat} <= os.supports_dir_fd
)
"""Whether folders are held as descriptors here (else: by path)."""

_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _CLOEXEC
NEW_FILE_FLAGS = (
    os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC | getattr(os, "O_BINARY", 0)
)
"""A new file: it must not exist, and a link in its place is never followed."""
_READ_FLAGS = os.O_RDONLY | _NOFOLLOW | _CLOEXEC | getattr(os, "O_BINARY", 0)


class UnsafePathError(ZigziikError, OSError):
    """Something under ``dest_dir`` is a symbolic link (or not a folder) where a folder goes.

    ``link`` says which.
    """

    link: bool = False


class SafeFolder:
    """An open folder (``path`` is for messages and results; operations use the descriptor)."""

    __slots__ = ("_fd", "path")

    def __init__(self, path: Path, fd: int | None) -> None:
        self.path = path
        self._fd = fd

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> SafeFolder:
        """The folder ``path`` (a link *to* it is the caller's choice, and followed)."""
        folder = Path(path)
        if not DIR_FDS:
            if not os.path.isdir(folder):
                raise NotADirectoryError(f"not a folder: {folder}")
            return cls(folder, None)
        return cls(folder, os.open(folder, _DIR_FLAGS))

    @property
    def fd(self) -> int | None:
        return self._fd

    def child(self, name: str, *, create: bool) -> SafeFolder | None:
        """The folder ``name`` in this one, created if ``create`` (else ``None`` if missing).

        A symbolic link there (to anywhere) or anything but a folder: `UnsafePathError`.
        """
        path = self.path / name
        if create:
            self.mkdir(name)
        if self._fd is None:
            return self._child_by_path(path, name, create=create)
        try:
            fd = os.open(name, _DIR_FLAGS | _NOFOLLOW, dir_fd=self._fd)
        except FileNotFoundError:
            if create:
                raise
            return None
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise self._refusal(path, name) from None
            raise
        return SafeFolder(path, fd)

    def _child_by_path(self, path: Path, name: str, *, create: bool) -> SafeFolder | None:
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            if create:
                raise
            return None
        if not stat.S_ISDIR(info.st_mode):
            raise self._refusal(path, name)
        return SafeFolder(path, None)

    def _refusal(self, path: Path, name: str) -> UnsafePathError:
        try:
            link = stat.S_ISLNK(self.lstat(name).st_mode)
        except OSError:
            link = False
        if link:
            error = UnsafePathError(
                f"{path} is a symbolic link; a harvest never writes through one (remove it)"
            )
            error.link = True
            return error
        return UnsafePathError(f"{path} exists and is not a folder")

    def mkdir(self, name: str) -> bool:
        """Make the folder ``name`` here: whether it was made (``False``: something is there)."""
        try:
            os.mkdir(self._name(name), dir_fd=self._fd)
        except FileExistsError:
            return False
        return True

    def _name(self, name: str) -> str:
        """What to pass with ``dir_fd``: the name itself, or the full path without descriptors."""
        return name if self._fd is not None else os.path.join(self.path, name)

    def create(self, name: str) -> int:
        """A new file ``name`` open for writing (it must not exist; never through a link)."""
        return os.open(self._name(name), NEW_FILE_FLAGS, 0o666, dir_fd=self._fd)

    def open_read(self, name: str) -> int:
        """The file ``name`` open for reading (never through a link)."""
        return os.open(self._name(name), _READ_FLAGS, dir_fd=self._fd)

    def replace(self, source: str, target: str) -> None:
        """Move ``source`` to ``target`` in this folder (a link at ``target`` is replaced)."""
        os.replace(self._name(source), self._name(target), src_dir_fd=self._fd, dst_dir_fd=self._fd)

    def unlink(self, name: str) -> None:
        os.unlink(self._name(name), dir_fd=self._fd)

    def rmdir(self, name: str) -> None:
        os.rmdir(self._name(name), dir_fd=self._fd)

    def stat(self) -> os.stat_result:
        """This folder's own status."""
        return os.stat(self.path) if self._fd is None else os.fstat(self._fd)

    def lstat(self, name: str) -> os.stat_result:
        return os.stat(self._name(name), dir_fd=self._fd, follow_symlinks=False)

    def __repr__(self) -> str:
        return f"SafeFolder({str(self.path)!r})"

    def __del__(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)
