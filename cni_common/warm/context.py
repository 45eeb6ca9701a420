"""What a process runs "as": the facts a warm child must share with its caller to behave as an exec'd call.

An exec'd plugin inherits its caller's namespaces, root directory, credentials, capabilities, LSM label,
securebits and no_new_privs. A warm child inherits the warm process's instead, so it serves a caller only when
every one of these is equal (:func:`mismatch`); otherwise the launcher simply execs. The caller's facts are read
from ``/proc/<pid>`` (the kernel's word, not the caller's), except securebits, which /proc does not show and
the launcher sends. Cgroups are not compared but joined (:func:`join_cgroups`): the kernel allows that.
"""

from __future__ import annotations

import os
import re

from cni_common import procfs

#: Namespace kinds that must be equal (``time`` too where the kernel has it).
NAMESPACES = ("mnt", "net", "pid", "user", "uts", "ipc", "cgroup", "time")
#: The kinds and order of the launcher's context key (``warm.h``: ``warm_context_key``), plus the root.
KEY_NAMESPACES = ("mnt", "net", "pid", "user", "uts", "ipc", "cgroup")
#: Lines of ``/proc/PID/status`` that must be equal: ids, supplementary groups, capability sets, no_new_privs,
#: seccomp.
STATUS_FIELDS = ("Uid", "Gid", "Groups", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs",
                 "Seccomp", "Seccomp_filters")
_STATUS_LINE = re.compile(r"^(%s):[ \t]*(.*?)[ \t]*$" % "|".join(STATUS_FIELDS), re.MULTILINE)


def _identity(path: str) -> tuple[int, int]:
    try:
        info = os.stat(path)
    except OSError:
        return (0, 0)
    return (info.st_dev, info.st_ino)


def _read(path: str) -> str:
    """The file's text ('' when unreadable); a warm child reads five of these (:mod:`cni_common.procfs`)."""
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


def _status(text: str) -> dict[str, str]:
    """The :data:`STATUS_FIELDS` of a ``/proc/PID/status`` text (one regex pass, not a dict of its ~60 lines)."""
    return dict(_STATUS_LINE.findall(text))


def snapshot(pid: int | str = "self") -> dict[str, object]:
    """Everything :func:`mismatch` compares, for process ``pid`` (``self`` for this one)."""
    proc = f"/proc/{pid}"
    status = _status(_read(f"{proc}/status"))
    facts: dict[str, object] = {f"ns:{kind}": _identity(f"{proc}/ns/{kind}") for kind in NAMESPACES}
    facts["root"] = _identity(f"{proc}/root")
    facts.update({f"status:{name}": status.get(name, "") for name in STATUS_FIELDS})
    facts["lsm"] = _read(f"{proc}/attr/current").strip("\0\n")
    return facts


def own_securebits() -> int:
    """This process's securebits (the runner's built-in module; -1 where there is none: no warm path then)."""
    try:
        from _cni_suite import securebits  # type: ignore[import-not-found]
    except ImportError:
        return -1
    return int(securebits())


def mismatch(own: dict[str, object], peer: dict[str, object], own_bits: int, peer_bits: int) -> str:
    """The first fact in which the caller differs from us ('' when none): a reason to refuse the call."""
    for name, value in own.items():
        if peer.get(name) != value:
            return name
    if own_bits < 0 or own_bits != peer_bits:
        return "securebits"
    return ""


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


def _hierarchies(text: str) -> dict[str, str]:
    """``/proc/PID/cgroup`` as controller field -> path (controllers sorted, as :func:`cgroup_mounts` keys)."""
    out = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            out[",".join(sorted(c for c in parts[1].split(",") if c))] = parts[2]
    return out


def join_cgroups(peer_pid: int, mounts: dict[str, tuple[str, str]]) -> str:
    """Move this process into every cgroup of ``peer_pid`` it is not in yet, as an exec'd child would be.

    Returns '' on success, else what failed (a hierarchy that is not mounted here, or a refused write).
    """
    own = _hierarchies(_read("/proc/self/cgroup"))
    peer = _hierarchies(_read(f"/proc/{peer_pid}/cgroup"))
    if not peer or set(own) != set(peer):
        return "cgroup hierarchies"
    for controllers, path in peer.items():
        if own[controllers] == path:
            continue
        mount = mounts.get(controllers)
        if mount is None:
            return f"cgroup {controllers or 'v2'} not mounted"
        root, point = mount
        if root != "/" and not (path == root or path.startswith(root + "/")):
            return f"cgroup {controllers or 'v2'} outside its mount"
        relative = path[len(root):] if root != "/" else path
        try:
            with open(f"{point}{relative}/cgroup.procs", "w") as f:
                f.write(str(os.getpid()))
        except OSError as err:
            return f"cgroup {controllers or 'v2'}: {err.strerror}"
    return ""
