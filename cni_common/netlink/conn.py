"""A plain rtnetlink socket: send one request, collect its replies, turn NLMSG_ERROR into NetlinkError.

A netlink socket belongs to the network namespace it was created in, for its whole life. So a plugin opens one
socket per namespace (:func:`open_conn`, briefly entering the container's namespace to create it) and never
needs to switch namespaces for netlink work again.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from typing import TYPE_CHECKING

from ..errors import CNIError, PluginCode
from . import attrs
from .consts import (
    NETLINK_CAP_ACK,
    NETLINK_EXT_ACK,
    NETLINK_ROUTE,
    NLM_F_ACK,
    NLM_F_ACK_TLVS,
    NLM_F_CAPPED,
    NLM_F_DUMP,
    NLM_F_DUMP_INTR,
    NLM_F_REQUEST,
    NLMSG_DONE,
    NLMSG_ERROR,
    NLMSG_NOOP,
    NLMSGERR_ATTR_MSG,
    SOL_NETLINK,
)

if TYPE_CHECKING:
    from ..netns import NetNS

_NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
_ERRNO = struct.Struct("=i")
#: Room for one datagram of replies. The kernel fills a dump's datagrams up to the size its reader offers (at most
#: 32 KiB); 128 KiB leaves a margin. ``recv`` allocates it per datagram without zero-filling: only the pages the
#: kernel writes are ever touched (a zeroed 128 KiB buffer per socket cost 32 page faults, ~0.1 ms per Conn).
_RECV_SIZE = 1 << 17
#: A dump interrupted by a concurrent change is retried this often (like upstream's netlinksafe).
_DUMP_RETRIES = 10


class NetlinkError(CNIError):
    """The kernel refused a request; ``errno`` says why (compare with :mod:`errno` constants)."""

    def __init__(self, err: int, what: str, detail: str = "") -> None:
        msg = f"{what}: {os.strerror(err)}"
        if detail:
            msg += f" ({detail})"
        super().__init__(PluginCode.LINK_FAILURE, msg)
        self.errno = err


class DumpInterrupted(NetlinkError):
    """A dump kept being interrupted by concurrent changes."""


class Conn:
    """An rtnetlink socket in one namespace; ``netns`` is that namespace (used to place veth peers)."""

    def __init__(self, netns: NetNS) -> None:
        self.netns = netns
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE)
        try:
            # Extended ack: the kernel explains many EINVAL/EOPNOTSUPP in words; and it need not echo requests.
            self._sock.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1)
            self._sock.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)
            self._sock.bind((0, 0))
        except OSError:
            self._sock.close()
            raise
        self._seq = 0

    def close(self) -> None:
        """Close the socket (the NetNS handle belongs to the caller)."""
        self._sock.close()

    def __enter__(self) -> Conn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, msg_type: int, body: bytes, flags: int, what: str) -> list[tuple[int, bytes]]:
        """Send one request and return the (type, payload) replies; raises NetlinkError on a kernel error.

        ``what`` names the operation and object for the error message ("create bridge 'cni0'").
        """
        self._seq = (self._seq + 1) & 0xFFFFFFFF or 1
        seq = self._seq
        flags |= NLM_F_REQUEST
        dump = (flags & NLM_F_DUMP) == NLM_F_DUMP
        if not dump:
            flags |= NLM_F_ACK
        try:
            self._sock.send(_NLMSGHDR.pack(_NLMSGHDR.size + len(body), msg_type, flags, seq, 0) + body)
        except OSError as exc:  # refused before the kernel saw it (qemu-user knows no tc messages: EOPNOTSUPP)
            raise NetlinkError(exc.errno or errno.EIO, what) from exc
        replies: list[tuple[int, bytes]] = []
        interrupted = False
        while True:
            data = self._sock.recv(_RECV_SIZE)
            size = len(data)
            offset = 0
            while offset + _NLMSGHDR.size <= size:
                length, mtype, mflags, mseq, _ = _NLMSGHDR.unpack_from(data, offset)
                if length < _NLMSGHDR.size:
                    break
                payload = data[offset + _NLMSGHDR.size : offset + length]
                offset += (length + 3) & ~3
                if mseq != seq:
                    continue  # a late answer to an earlier request, or a notification
                if mflags & NLM_F_DUMP_INTR:
                    interrupted = True
                if mtype == NLMSG_ERROR:
                    err = -_ERRNO.unpack_from(payload)[0]
                    if err:
                        raise NetlinkError(err, what, _ext_ack_msg(payload, mflags))
                    return replies
                if mtype == NLMSG_DONE:
                    err = -_ERRNO.unpack_from(payload)[0] if len(payload) >= 4 else 0
                    if err:
                        raise NetlinkError(err, what, _ext_ack_msg(payload, mflags))
                    if interrupted:
                        raise DumpInterrupted(errno.EINTR, what, "dump interrupted")
                    return replies
                if mtype != NLMSG_NOOP:
                    replies.append((mtype, payload))

    def dump(self, msg_type: int, body: bytes, what: str) -> list[tuple[int, bytes]]:
        """A full dump, retried while concurrent changes interrupt it."""
        for _ in range(_DUMP_RETRIES - 1):
            try:
                return self.request(msg_type, body, NLM_F_DUMP, what)
            except DumpInterrupted:
                continue
        return self.request(msg_type, body, NLM_F_DUMP, what)


def request_unless(conn: Conn, msg_type: int, body: bytes, flags: int, what: str, tolerated: tuple[int, ...]) -> bool:
    """One change request; False instead of an error when the kernel answers with an errno in ``tolerated``
    (what was to be added is there already, or what was to be deleted is gone), True when it was done."""
    try:
        conn.request(msg_type, body, flags, what)
    except NetlinkError as exc:
        if exc.errno in tolerated:
            return False
        raise
    return True


def _ext_ack_msg(payload: bytes, flags: int) -> str:
    """The kernel's extended-ack text, if any (it follows the errno and the capped request header)."""
    if not flags & NLM_F_ACK_TLVS:
        return ""
    offset = _ERRNO.size + _NLMSGHDR.size
    if not flags & NLM_F_CAPPED:
        offset += _NLMSGHDR.unpack_from(payload, _ERRNO.size)[0] - _NLMSGHDR.size
    return attrs.get_str(attrs.parse(payload, offset), NLMSGERR_ATTR_MSG)


def open_conn(netns: NetNS | None = None) -> Conn:
    """A socket in ``netns`` (default: the caller's own namespace, as a :class:`NetNS` the Conn then owns).

    The socket is created while entered into ``netns`` and stays bound there after we switch back.
    """
    from ..netns import NetNS as _NetNS

    if netns is None:
        own = _NetNS.current()
        try:
            return _OwningConn(own)
        except BaseException:
            own.close()
            raise
    with netns.entered():
        return Conn(netns)


class _OwningConn(Conn):
    """A Conn on the caller's own namespace, which also closes the NetNS handle it opened for it."""

    def close(self) -> None:
        super().close()
        self.netns.close()
