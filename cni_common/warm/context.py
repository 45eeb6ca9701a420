"""What a warm process runs "as": the key naming it, and where the cgroup hierarchies are mounted.

An exec'd plugin inherits its caller's namespaces, root directory, credentials, capabilities, LSM label,
securebits and no_new_privs. A warm child inherits the warm process's instead, so it serves a caller only when
every one of these is equal; otherwise the launcher simply execs. That check, and the joining of the caller's
cgroups (the kernel allows that), happen in each child in C (``cni_common/bundle/warm_child.h``); what this
module gives is the warm process's name for its context (:func:`context_key`, the launcher's too) and the cgroup
mounts the child needs (:func:`cgroup_mounts`).
"""

from __future__ import annotations

import os

from cni_common import procfs

#: The kinds and order of the launcher's context key (``warm.h``: ``warm_context_key``), then the root.
KEY_NAMESPACES = ("mnt", "net", "pid", "user", "uts", "ipc", "cgroup")


def _identity(path: str) -> tuple[int, int]:
    try:
        info = os.stat(path)
    except OSError:
        return (0, 0)
    return (info.st_dev, info.st_ino)


def _read(path: str) -> str:
    """The file's text ('' when unreadable)."""
    try:
        return procfs.read(path).decode("utf-8", "replace")
    except OSError:
        return ""


def context_key(proc: str = "/proc/self", root: str = "/") -> str:
    """The 16 hex digits naming the warm process of a context: FNV-1a over ``dev:ino`` lines, as warm.h does."""
    text = "".join("%d:%d\n" % _identity(f"{proc}/ns/{kind}") for kind in KEY_NAMESPACES)
    text += "%d:%d\n" % _identity(root)
    return f"{fnv1a64(text.encode()):016x}"


def fnv1a64(data: bytes) -> int:
    """The 64-bit FNV-1a hash (what ``warm.h`` computes in C)."""
    value = 14695981039346656037  # offset basis
    for byte in data:
        value = ((value ^ byte) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return value


#: cgroup v1 super options that are not controllers (nor ``name=``).
_V1_OPTIONS = frozenset({"rw", "ro", "xattr", "noprefix", "clone_children", "cpuset_v2_mode", "none"})


def cgroup_mounts(mountinfo: str | None = None) -> dict[str, tuple[str, str]]:
    """Where each cgroup hierarchy of this mount namespace is mounted: its ``/proc/PID/cgroup`` controller
    field (``''`` for cgroup2, ``memory``, ``cpu,cpuacct``, ``name=systemd``...) -> (mount root, mount point)."""
    text = _read("/proc/self/mountinfo") if mountinfo is None else mountinfo
    mounts: dict[str, tuple[str, str]] = {}
    v1: list[tuple[set[str], str, str]] = []
    for line in text.splitlines():
        head, _, tail = line.partition(" - ")
        fields, rest = head.split(), tail.split()
        if len(fields) < 5 or len(rest) < 3:
            continue
        root, point = fields[3], fields[4].replace("\\040", " ")
        if rest[0] == "cgroup2":
            mounts.setdefault("", (root, point))
        elif rest[0] == "cgroup":
            v1.append((set(rest[2].split(",")), root, point))
    for options, root, point in v1:
        controllers = sorted(o for o in options if o not in _V1_OPTIONS and not o.startswith("release_agent="))
        mounts.setdefault(",".join(controllers), (root, point))
    return mounts
