"""Atomic file writes and the safetensors F32 writer shared by fff's Python scripts (numpy only)."""
import contextlib
import errno
import json
import os
import struct
from typing import Callable, Dict

import numpy as np


def atomic_write(path: str, write: Callable) -> None:
    """Calls write(fileobj) on a new file in `path`'s directory, fsyncs it, renames it over `path`
    and fsyncs the directory. Where the file system allows (O_TMPFILE), the file has no name
    until it is complete, so a process killed while writing leaves nothing behind; it is named
    .NAME.PID.tmp only for the moment before the rename. An OSError names `path`; the old file
    stays as it was and the temporary file is removed."""
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    named = False
    try:
        try:
            if not os.path.isdir("/proc/self/fd"):  # the unnamed file is linked through /proc
                raise OSError(errno.EOPNOTSUPP, "no /proc")
            fd = os.open(directory, os.O_TMPFILE | os.O_WRONLY | os.O_CLOEXEC, 0o666)
        except (AttributeError, OSError) as e:
            # No O_TMPFILE here (kernel, file system): a named file from the start. Other errors
            # (EACCES, EROFS, ENOSPC) come again from this open and are reported from there.
            if isinstance(e, OSError) and e.errno not in (errno.EOPNOTSUPP, errno.EISDIR,
                                                          errno.EINVAL, errno.ENOENT):
                raise
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
            named = True
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
            if not named:
                # A directory descriptor makes os.link call linkat(AT_SYMLINK_FOLLOW): the file
                # itself is linked, not the /proc symbolic link to it.
                source = f"/proc/self/fd/{f.fileno()}"
                dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
                try:
                    try:
                        os.link(source, os.path.basename(tmp), dst_dir_fd=dir_fd)
                    except FileExistsError:  # left by a killed process that had this id
                        os.unlink(tmp)
                        os.link(source, os.path.basename(tmp), dst_dir_fd=dir_fd)
                finally:
                    os.close(dir_fd)
                named = True
        os.replace(tmp, path)
    except BaseException as e:
        if named:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        if isinstance(e, OSError) and e.errno is not None:
            raise OSError(e.errno, f"cannot write {path}: {e.strerror}") from e
        raise
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)  # makes the rename durable
    except OSError:
        pass  # best effort: the new file is in place; some file systems refuse this
    finally:
        os.close(dir_fd)


def write_safetensors(path: str, tensors: Dict[str, np.ndarray], metadata: Dict[str, str]) -> None:
    """F32 little-endian row-major safetensors (8-byte header length, JSON header, data), atomically."""
    header = {"__metadata__": dict(metadata)}
    blobs = []
    offset = 0
    for name, array in tensors.items():
        data = np.ascontiguousarray(array, dtype="<f4")
        header[name] = {"dtype": "F32", "shape": list(data.shape), "data_offsets": [offset, offset + data.nbytes]}
        blobs.append(data)
        offset += data.nbytes
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * ((8 - (8 + len(text)) % 8) % 8)  # the data area starts at a multiple of 8

    def write(f):
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for data in blobs:
            f.write(data.tobytes())

    atomic_write(path, write)
