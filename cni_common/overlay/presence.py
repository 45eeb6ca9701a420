"""Whether a ``vxlan agent`` runs for a network on this node: an abstract Unix socket name it holds.

The ADD path asks, because with an agent running it must leave removals to it: the agent knows whether the
store has been reachable long enough for "no liveness record" to mean "gone" (see :mod:`.agent`), a single
ADD does not. Abstract socket names belong to the network namespace (the node), cost no file, and vanish with
the process, however it ends (a SIGKILLed agent frees its name at once).
"""

from __future__ import annotations

import errno
import socket
import time

from .config import VxlanConf


def _name(conf: VxlanConf) -> str:
    return f"\0cni-vxlan-agent/{conf.name}/{conf.vni}"


def agent_running(conf: VxlanConf) -> bool:
    """True when the name is held (by the agent, or for a few microseconds by another ADD asking too)."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.bind(_name(conf))
        return False
    except OSError as exc:
        return exc.errno == errno.EADDRINUSE
    finally:
        probe.close()


def claim(conf: VxlanConf, patience: float = 10.0) -> socket.socket:
    """Hold the name for as long as the returned socket lives; retries while ADDs probe it.

    Raises OSError (EADDRINUSE) when another agent keeps it past ``patience`` seconds.
    """
    deadline = time.monotonic() + patience
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(_name(conf))
            return sock
        except OSError as exc:
            sock.close()
            if exc.errno != errno.EADDRINUSE or time.monotonic() > deadline:
                raise
        time.sleep(0.05)
