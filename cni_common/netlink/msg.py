"""Message bodies built and read with pyroute2's rtnetlink classes, for :class:`~.conn.Conn` to carry.

:class:`~.conn.Conn` sends and receives bodies: what follows the 16-byte ``nlmsghdr`` (it writes and checks the
headers itself: sequence numbers, ACKs, errors, dumps). pyroute2's classes encode and decode whole messages,
header first; these two functions convert between the two. Attribute names and value forms are pyroute2's
(``("IFLA_IFNAME", "eth0")``, MACs and IPs as strings); nested attributes are ``{"attrs": [...]}``, and a third
tuple item adds NLA flags (``NLA_F_NESTED`` where the kernel insists on it).
"""

from __future__ import annotations

import struct
from typing import Any, Sequence

from .consts import NLA_F_NESTED
from .pyroute2_light import message_class

__all__ = ["NLA_F_NESTED", "build", "parse"]
_NLMSGHDR = struct.Struct("=IHHII")


def build(kind: str, nlas: Sequence[tuple] = (), **fields: Any) -> bytes:
    """The body of a ``kind`` message ("ifinfmsg", "ifaddrmsg", "rtmsg", "ndmsg") with these header fields
    (``index=3``, ``family=AF_INET``...; unset ones are 0) and attributes."""
    msg = message_class(kind)()
    for name, value in fields.items():
        msg[name] = value
    msg["attrs"] = list(nlas)
    msg.encode()
    return bytes(msg.data[_NLMSGHDR.size : msg["header"]["length"]])


def parse(kind: str, msg_type: int, body: bytes) -> Any:
    """A received body decoded as a ``kind`` message (a pyroute2 nlmsg: ``m["index"]``, ``m.get_attr(...)``)."""
    msg = message_class(kind)(_NLMSGHDR.pack(_NLMSGHDR.size + len(body), msg_type, 0, 0, 0) + body)
    msg.decode()
    return msg
