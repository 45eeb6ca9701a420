"""The only code in the suite that executes iptables, ip6tables and nft.

Everything acts on the network namespace of the calling process. Changes go through one
``ip(6)tables-restore --noflush -w`` or one ``nft -f -`` per call, so each change is a single kernel
transaction and the xtables lock is taken once (and waited for, never failed on).

Read-modify-write races with other writers (another plugin, kube-proxy) are handled by :func:`transact`:
the batch is computed from a fresh read and retried when the kernel rejects it because the state moved.
Our own concurrent invocations are serialised by a file lock per table family (IPv4 iptables, IPv6 iptables,
nft), because a restore that declares a shared chain which a parallel invocation has just created would flush
it. The IPv4 and IPv6 tables are separate kernel objects: a call changes both at once (:func:`for_each_family`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os

from .. import spawn
from ..errors import CNIError, PluginCode
from ..log import get_logger
from .xtables import parse_save

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~4 ms per plugin process)
if TYPE_CHECKING:
    from typing import Any, Callable, Iterable, Iterator, Optional

    from .xtables import RestoreBatch, SavedTable

log = get_logger(__name__)

LOCK_DIR = "/run/lock"
NFT_LOCK = "nft"
XTABLES_WAIT_SECONDS = "30"
ATTEMPTS = 3


class NetfilterError(CNIError):
    """A netfilter command failed; ``details`` carries its stderr."""

    def __init__(self, msg: str, details: str = "") -> None:
        super().__init__(PluginCode.NETFILTER_FAILURE, msg, details)


def run(argv: list[str], stdin: str = "") -> spawn.Completed:
    """Run one netfilter command, capturing output; a missing binary is a :class:`NetfilterError`."""
    try:
        return spawn.run(argv, stdin.encode())
    except OSError as exc:
        raise NetfilterError(f"failed to run {argv[0]}", str(exc)) from exc


def iptables_cmd(family: int, tool: str = "") -> str:
    """``iptables``/``ip6tables`` (+ ``-save``/``-restore``) for an address family (4 or 6)."""
    return ("iptables" if family == 4 else "ip6tables") + tool


class TableUnreadable(NetfilterError):
    """``ip(6)tables-save`` is missing or failed: that family's iptables is not usable on this node."""


def iptables_save(family: int, table: str = "nat") -> str:
    """The current rules of one table, in iptables-save syntax; :class:`TableUnreadable` when it cannot be read."""
    command = iptables_cmd(family, "-save")
    try:
        proc = run([command, "-t", table])
    except NetfilterError as exc:
        raise TableUnreadable(f"{command} -t {table} failed", exc.details) from exc
    if proc.returncode != 0:
        raise TableUnreadable(f"{command} -t {table} failed", proc.error_text())
    return proc.text()


def iptables_restore(family: int, text: str) -> spawn.Completed:
    """Apply a restore batch without flushing anything else, waiting for the xtables lock."""
    return run([iptables_cmd(family, "-restore"), "--noflush", "-w", XTABLES_WAIT_SECONDS], text)


def nft_list(kind: str, family: str, table: str, *chain: str) -> Optional[list[dict[str, Any]]]:
    """``nft -j list <kind> <family> <table> [<chain>]`` as the list of JSON objects, or None when the table or
    chain does not exist. A table :func:`nft_tables` does not see costs no exec (the usual DEL on a node that
    never used that layout)."""
    if (family, table) not in nft_tables():
        return None
    objects = (kind, family, table, *chain)
    proc = run(["nft", "-j", "list", *objects])
    if proc.returncode != 0:
        if "No such file or directory" in proc.error_text():
            return None
        raise NetfilterError(f"nft list {' '.join(objects)} failed", proc.error_text())
    return list(json.loads(proc.stdout).get("nftables", []))


def nft_tables() -> set[tuple[str, str]]:
    """(family, name) of every nftables table, so that :func:`nft_list` execs ``nft`` only for tables that exist."""
    return set(nft_table_handles())


def nft_table_handles() -> dict[tuple[str, str], int]:
    """(family, name) -> handle of every nftables table (a table made again gets a new handle).

    Read over nfnetlink, without an exec; ``nft -j list tables`` only if that read fails.
    """
    try:
        return _nft_tables_netlink()
    except OSError as exc:
        log.debug("nfnetlink table dump failed (%s), asking nft", exc)
    proc = run(["nft", "-j", "list", "tables"])
    if proc.returncode != 0:
        raise NetfilterError("nft list tables failed", proc.error_text())
    tables = (obj["table"] for obj in json.loads(proc.stdout).get("nftables", []) if "table" in obj)
    return {(str(t.get("family")), str(t.get("name"))): int(t.get("handle", 0)) for t in tables}


_NLMSG_HDR = "=IHHII"  # length, type, flags, seq, port id
_NFT_GETTABLE = (10 << 8) | 1  # NFNL_SUBSYS_NFTABLES, NFT_MSG_GETTABLE
_NFT_NEWTABLE = (10 << 8) | 0  # what the dump answers with
_NFPROTO = {1: "inet", 2: "ip", 3: "arp", 5: "netdev", 7: "bridge", 10: "ip6"}


def _nft_tables_netlink() -> dict[tuple[str, str], int]:
    """NFT_MSG_GETTABLE dump: NFTA_TABLE_NAME (1) and NFTA_TABLE_HANDLE (4, big-endian u64) of each table.
    Raises OSError on any failure."""
    import struct

    tables: dict[tuple[str, str], int] = {}
    for mtype, family, attrs in _nfnl_dump(_NFT_GETTABLE, struct.pack("=BBH", 0, 0, 0)):  # AF_UNSPEC: all
        name = attrs.get(1)
        if mtype == _NFT_NEWTABLE and name is not None:
            handle = attrs.get(4, b"")
            tables[(_NFPROTO.get(family, str(family)), name.rstrip(b"\0").decode())] = (
                struct.unpack(">Q", handle)[0] if len(handle) == 8 else 0)
    return tables


_NFT_GETRULE = (10 << 8) | 7  # NFT_MSG_GETRULE; the dump answers with NFT_MSG_NEWRULE
_FAMILY_NUMBER = {name: number for number, name in _NFPROTO.items()}


def nft_chain_rule_handles(family: str, table: str, chain: str) -> list[int]:
    """The handles of the rules of one chain, in order, read over nfnetlink without an exec: a GETRULE dump that
    the kernel filters by table and chain (NFTA_RULE_TABLE 1, NFTA_RULE_CHAIN 2), so its size is that chain's,
    not the ruleset's. Empty also when the table or chain does not exist; OSError on a failure."""
    import struct

    def attr(kind: int, text: str) -> bytes:
        value = text.encode() + b"\0"
        return struct.pack("=HH", 4 + len(value), kind) + value + b"\0" * (-len(value) % 4)

    body = struct.pack("=BBH", _FAMILY_NUMBER[family], 0, 0) + attr(1, table) + attr(2, chain)
    return [struct.unpack(">Q", attrs[3])[0] for mtype, _, attrs in _nfnl_dump(_NFT_GETRULE, body)
            if mtype == _NFT_NEWRULE and len(attrs.get(3, b"")) == 8]


def _nfnl_dump(msg_type: int, body: bytes) -> Iterator[tuple[int, int, dict[int, bytes]]]:
    """(message type, nfgenmsg family, attributes by type) of each answer of one nfnetlink dump request
    (``body``: its nfgenmsg and attributes). OSError on a failure, an error answer included (NLMSG_DONE carries
    the dump's errno)."""
    import socket
    import struct

    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 12) as sock:  # NETLINK_NETFILTER
        sock.bind((0, 0))
        sock.send(struct.pack(_NLMSG_HDR, 16 + len(body), msg_type, 0x301, 1, 0) + body)  # REQUEST|DUMP
        while True:
            data = sock.recv(1 << 16)
            off = 0
            while off + 16 <= len(data):
                length, mtype, _, _, _ = struct.unpack_from(_NLMSG_HDR, data, off)
                if length < 16:
                    raise OSError("malformed netlink message")
                if mtype in (2, 3):  # NLMSG_ERROR, NLMSG_DONE: an errno first (0 for an acknowledgement)
                    (err,) = struct.unpack_from("=i", data, off + 16) if length >= 20 else (0,)
                    if err:
                        raise OSError(-err, os.strerror(-err))
                    if mtype == 3:
                        return
                elif length >= 20:
                    yield mtype, data[off + 16], _attrs(data, off, length)
                off += (length + 3) & ~3


_NFNLGRP_NFTABLES = 7  # the multicast group of every committed nftables change
_SOL_NETLINK, _NETLINK_ADD_MEMBERSHIP = 270, 1
_NFT_NEWRULE, _NFT_DELRULE = (10 << 8) | 6, (10 << 8) | 8
_WATCH_BUFFER = 1 << 20  # what a concurrent commit of others may queue before ours is read (ENOBUFS beyond)


def nft_watch() -> Optional[Any]:
    """A NETLINK_NETFILTER socket subscribed to NFNLGRP_NFTABLES in this network namespace, or None when one
    cannot be made. While it is open, every commit (ours, and any other process's) queues a notification per
    object it adds or deletes, with the object's handle and, for a rule, its userdata (the comment): the
    handles ``nft -e -a`` would print, without the ruleset dump nft makes for the echo. Queued at commit time,
    so they are all there when ``nft`` has exited. Read with :func:`nft_rules_added`."""
    import socket

    try:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC, 12)
    except OSError:
        return None
    try:
        try:
            sock.setsockopt(socket.SOL_SOCKET, 33, _WATCH_BUFFER)  # SO_RCVBUFFORCE (CAP_NET_ADMIN)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _WATCH_BUFFER)
        sock.bind((0, 0))
        sock.setsockopt(_SOL_NETLINK, _NETLINK_ADD_MEMBERSHIP, _NFNLGRP_NFTABLES)
    except OSError as exc:
        log.debug("cannot watch nftables notifications (%s)", exc)
        sock.close()
        return None
    return sock


def _attrs(data: bytes, off: int, length: int) -> dict[int, bytes]:
    """The attributes of the nfnetlink message at ``off`` (after its nlmsghdr and nfgenmsg), by type."""
    import struct

    attrs: dict[int, bytes] = {}
    attr = off + 20
    while attr + 4 <= off + length:
        alen, atype = struct.unpack_from("=HH", data, attr)
        if alen < 4:
            break
        attrs[atype & 0x7FFF] = data[attr + 4:attr + alen]
        attr += (alen + 3) & ~3
    return attrs


def _rule_comment(userdata: bytes) -> Optional[str]:
    """The comment in a rule's userdata: TLVs of (type u8, length u8, value), NFTNL_UDATA_RULE_COMMENT = 0, the
    value NUL-terminated."""
    off = 0
    while off + 2 <= len(userdata):
        kind, length = userdata[off], userdata[off + 1]
        if kind == 0:
            return userdata[off + 2:off + 2 + length].split(b"\0", 1)[0].decode(errors="replace")
        off += 2 + length
    return None


def nft_rules_added(sock: Any, chains: Iterable[str], comment: str) -> Optional[list[tuple[str, str, str, int]]]:
    """(family, table, chain, handle) of the rules with exactly ``comment`` in ``chains`` that commits added
    since :func:`nft_watch` (less those deleted since), in the order added; None when notifications were lost
    (the kernel reports ENOBUFS on the socket: its buffer overflowed, or a notification could not be made).
    A table deleted meanwhile is no exception: its deletion notifies a DELRULE for each of its rules."""
    import struct

    wanted = set(chains)
    added: dict[tuple[str, str, int], tuple[str, str, str, int]] = {}
    while True:
        try:
            data = sock.recv(1 << 16)
        except BlockingIOError:
            return list(added.values())
        except OSError as exc:
            log.debug("nftables notifications lost (%s)", exc)
            return None
        off = 0
        while off + 20 <= len(data):
            length, mtype, _, _, _ = struct.unpack_from(_NLMSG_HDR, data, off)
            if length < 16:
                return None
            if mtype in (_NFT_NEWRULE, _NFT_DELRULE):
                family = _NFPROTO.get(data[off + 16], str(data[off + 16]))
                attrs = _attrs(data, off, length)
                # NFTA_RULE_TABLE 1, NFTA_RULE_CHAIN 2, NFTA_RULE_HANDLE 3 (big-endian u64), NFTA_RULE_USERDATA 7
                table = attrs.get(1, b"").rstrip(b"\0").decode(errors="replace")
                chain = attrs.get(2, b"").rstrip(b"\0").decode(errors="replace")
                (handle,) = struct.unpack(">Q", attrs[3]) if len(attrs.get(3, b"")) == 8 else (0,)
                if mtype == _NFT_DELRULE:
                    added.pop((family, table, handle), None)
                elif handle and chain in wanted and _rule_comment(attrs.get(7, b"")) == comment:
                    added[(family, table, handle)] = (family, table, chain, handle)
            off += (length + 3) & ~3


def nft_apply(script: str) -> spawn.Completed:
    """Apply an nft script as one transaction."""
    return run(["nft", "-f", "-"], script)


@contextlib.contextmanager
def suite_lock(name: str) -> Iterator[None]:
    """Serialise read-modify-write cycles on one table family (``ipv4``, ``ipv6``, ``nft``) between our own
    plugin processes and threads."""
    os.makedirs(LOCK_DIR, exist_ok=True)
    fd = os.open(f"{LOCK_DIR}/cni-netfilter-{name}.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def transact(what: str, build: Callable[[], Optional[str]],
             apply: Callable[[str], spawn.Completed], lock: str) -> None:
    """Compute a batch from fresh state and apply it, under the ``lock`` of :func:`suite_lock`; retry when a
    concurrent writer invalidated it.

    ``build`` returns None when nothing needs to change (then nothing is executed).
    """
    last = ""
    for attempt in range(ATTEMPTS):
        with suite_lock(lock):
            batch = build()
            if batch is None:
                return
            proc = apply(batch)
        if proc.returncode == 0:
            return
        last = proc.error_text()
        log.warning("%s: attempt %d failed: %s", what, attempt + 1, last)
    raise NetfilterError(f"failed to {what}", last)


def ipt_transact(family: int, what: str, make: Callable[[SavedTable], RestoreBatch]) -> None:
    """:func:`transact` on one family's nat table: ``make`` turns a fresh iptables-save into the batch."""
    transact(what, lambda: make(parse_save(iptables_save(family))).render(),
             lambda text: iptables_restore(family, text), f"ipv{family}")


_LEGACY_TABLE_NAMES = {4: "/proc/thread-self/net/ip_tables_names", 6: "/proc/thread-self/net/ip6_tables_names"}


def ipt_nat_absent(family: int) -> bool:
    """True when this network namespace has no nat table of that family for iptables in either kernel
    implementation, so no chain or rule of ours can be in one and a cleanup has nothing to read (no exec).

    iptables-nft keeps its nat table as the nf_tables table ``ip nat`` / ``ip6 nat`` (seen by the netlink dump
    of :func:`nft_table_handles`; it stays once made, even empty). iptables-legacy makes its nat table in a
    namespace on the first use there, and the kernel lists it in ``ip(6)_tables_names`` of that namespace
    (missing file: the x_tables module of that family is not even loaded). False whenever either cannot be
    read: then the caller reads the table as before. Why: on a node that uses the nftables layouts, a DEL
    cleaned both layouts with six iptables execs (~2.5 ms each) of tables that did not exist."""
    try:
        if ("ip" if family == 4 else "ip6", "nat") in _nft_tables_netlink():
            return False
    except OSError:
        return False
    if not os.path.isdir("/proc/thread-self/net"):
        return False  # no /proc to ask: cannot tell
    try:
        with open(_LEGACY_TABLE_NAMES[family], encoding="ascii") as names:
            return "nat" not in names.read().split()
    except FileNotFoundError:
        return True
    except (OSError, ValueError):
        return False


def ipt_clean(family: int, what: str, make: Callable[[SavedTable], RestoreBatch]) -> None:
    """:func:`ipt_transact` for a cleanup that nothing says has work in this family (a DEL or GC that does
    not know the attachment's addresses): a table that cannot be read is skipped with a warning, as upstream
    skips an iptables it cannot use. A node booted with IPv6 disabled must still be able to DEL and GC.
    No nat table of that family at all (:func:`ipt_nat_absent`): nothing to read or change."""
    if ipt_nat_absent(family):
        return
    try:
        ipt_transact(family, what, make)
    except TableUnreadable as exc:
        log.warning("%s: skipped, the IPv%d nat table cannot be read: %s", what, family, exc.details or exc.msg)


def for_each_family(families: Iterable[int], action: Callable[[int], None], what: str) -> None:
    """``action(family)`` for IPv4 and IPv6 at once: each family is its own table, changed by its own execs,
    so neither waits for the other (see :mod:`cni_common.parallel`)."""
    from ..parallel import for_each

    for_each(families, action, what)


_support_cache: dict[str, bool] = {}


def on_path(name: str) -> bool:
    """``shutil.which(name) is not None``, without importing shutil (~5 ms per plugin process)."""
    return spawn.find_executable(name, os.environ.get("PATH", os.defpath).split(os.pathsep)) is not None


def supports_iptables() -> bool:
    """True when the iptables API is usable here (legacy or iptables-nft), as upstream's SupportsIPTables."""
    if "iptables" not in _support_cache:
        ok = on_path("iptables") and run(
            ["iptables", "-w", XTABLES_WAIT_SECONDS, "-t", "filter", "-S", "INPUT", "1"]).returncode == 0
        _support_cache["iptables"] = ok
    return _support_cache["iptables"]


def supports_nftables() -> bool:
    """True when nft can make changes here (checked without changing anything)."""
    if "nftables" not in _support_cache:
        ok = on_path("nft") and run(
            ["nft", "--check", "-f", "-"], "add table ip cni_supports_nftables_test\n").returncode == 0
        _support_cache["nftables"] = ok
    return _support_cache["nftables"]
