"""Deleting what a program left behind, whatever shape it has (standard library only).

`shutil.rmtree` recurses once per directory level and opens paths by name: a 3,000-deep tree
overflows the recursion limit, and a path past PATH_MAX cannot be named at all. Here a tree is
removed with directory descriptors and no recursion: a directory's subdirectories are moved
up into the top directory and emptied one by one, so neither the stack nor the number of open
descriptors grows with depth. Other filesystems mounted inside (read-only bind mounts of the
interpreter or the checkout) are never entered, removed or moved: `clean_dir` walks only the
directories leading to them, by name. Errors are counted, not raised.
"""

from __future__ import annotations

import os
import re
import stat

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


def _unlink(name: str, dir_fd: int) -> int:
    try:
        os.unlink(name, dir_fd=dir_fd)
        return 0
    except FileNotFoundError:
        return 0
    except OSError:
        return 1


def _open_dir(name: str, dir_fd: int) -> int:
    """Open a subdirectory, making it readable first if the program locked it (mode 000)."""
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except PermissionError:
        os.chmod(name, 0o700, dir_fd=dir_fd)  # a directory (checked by lstat), ours to change
        return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)


def _empty(root_fd: int, device: int) -> int:
    """Empty the directory `root_fd` (on `device`); the number of entries that stayed."""
    kept: set[str] = set()  # mount points, and directories that hold one or resist removal
    moved = 0
    while True:
        subdirs: list[str] = []
        failures = 0
        with os.scandir(root_fd) as entries:
            for entry in entries:
                if entry.name in kept:
                    continue
                try:
                    info = entry.stat(follow_symlinks=False)
                except OSError:
                    failures += 1
                    continue
                if not stat.S_ISDIR(info.st_mode):
                    failures += _unlink(entry.name, root_fd)
                elif info.st_dev != device:
                    kept.add(entry.name)  # another filesystem mounted here: not ours
                else:
                    subdirs.append(entry.name)
        if not subdirs:
            return failures + len(kept)
        for name in subdirs:
            try:
                fd = _open_dir(name, root_fd)
            except OSError:
                kept.add(name)
                continue
            try:
                with os.scandir(fd) as entries:
                    for entry in entries:
                        try:
                            info = entry.stat(follow_symlinks=False)
                        except OSError:
                            continue
                        if not stat.S_ISDIR(info.st_mode):
                            _unlink(entry.name, fd)
                        elif info.st_dev != device:
                            kept.add(name)  # holds a mount point: keep the path to it
                        else:
                            moved += 1
                            try:
                                os.rename(
                                    entry.name,
                                    f".fixloop-rm-{moved}",
                                    src_dir_fd=fd,
                                    dst_dir_fd=root_fd,
                                )
                            except OSError:
                                kept.add(name)
            except OSError:
                kept.add(name)
            finally:
                os.close(fd)
            if name not in kept:
                try:
                    os.rmdir(name, dir_fd=root_fd)
                except OSError:
                    kept.add(name)


def mount_points() -> set[str]:
    """Every mount point of this process's mount namespace (from /proc/self/mountinfo)."""
    points: set[str] = set()
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                fields = line.split()
                if len(fields) > 4:
                    points.add(re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), fields[4]))
    except OSError:
        pass
    return points


def clean_dir(path: str, mounts: set[str] | None = None) -> int:
    """Remove everything inside `path` but mounts and the directories leading to them; the
    number of entries that stayed. Trees holding no mount are removed by `remove_tree`,
    which moves directories only within them."""
    path = os.path.abspath(path)
    if mounts is None:
        mounts = mount_points()
    below = [m for m in mounts if m.startswith(path.rstrip("/") + "/")]
    if not below:
        try:
            fd = os.open(path, _DIR_FLAGS)
        except OSError:
            return 0
        try:
            return _empty(fd, os.fstat(fd).st_dev)
        except OSError:
            return 1
        finally:
            os.close(fd)
    stayed = 0
    try:
        names = os.listdir(path)
    except OSError:
        return 1
    for name in names:
        child = os.path.join(path, name)
        if child in mounts:
            stayed += 1
        elif any(m.startswith(child + "/") for m in below):
            stayed += 1 + clean_dir(child, mounts)  # a directory bwrap made to hold a mount
        elif not remove_tree(child):
            stayed += 1
    return stayed


def remove_tree(path: str) -> bool:
    """Remove `path` (a file, a symlink or a directory tree of any depth). True when gone."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    try:
        if not stat.S_ISDIR(info.st_mode):
            os.unlink(path)
            return True
        fd = os.open(path, _DIR_FLAGS)
        try:
            _empty(fd, os.fstat(fd).st_dev)
        finally:
            os.close(fd)
        os.rmdir(path)
        return True
    except OSError:
        return False
