"""A bounded TCP stream between two test namespaces, and the rate the receiver measured.

The sender writes as fast as the kernel lets it for a fixed time; the receiver counts the bytes that arrive
and reports the rate over a window that starts after ``skip`` seconds of stream, so a token bucket's initial
burst (and TCP's slow start) stays out of the number. Both sides stop on their own (time limits and socket
timeouts); the test kills them anyway if they do not.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from tests.helpers.netns import Netns

_RECEIVER = r"""
import json, socket, sys, time
host, port, skip, window = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
skip_bytes = int(sys.argv[5])
fam = socket.AF_INET6 if ":" in host else socket.AF_INET
s = socket.socket(fam, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((host, port)); s.listen(1); s.settimeout(20)
print("ready", flush=True)
c, _ = s.accept(); c.settimeout(5)
total = 0; start = None; mark = None; counted = 0
while True:
    data = c.recv(1 << 16)
    if not data:
        break
    now = time.monotonic()
    if start is None:
        start = now
    total += len(data)
    if now - start >= skip and total >= skip_bytes:
        if mark is None:
            mark = (now, total)
        elif now - mark[0] >= window:
            counted = total - mark[1]
            break
elapsed = (time.monotonic() - mark[0]) if mark else 0.0
c.close()
print(json.dumps({"bits_per_s": counted * 8 / elapsed if elapsed and counted else 0.0, "total": total,
                  "seconds": elapsed}), flush=True)
"""

_SENDER = r"""
import socket, sys, time
host, port, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
s = socket.create_connection((host, port), timeout=10)
chunk = b"x" * (1 << 16)
end = time.monotonic() + seconds
try:
    while time.monotonic() < end:
        s.sendall(chunk)
except OSError:
    pass  # the receiver closes once it has measured its window
s.close()
"""


def measure(sender: Netns, receiver: Netns, address: str, port: int, *, skip: float = 1.0,
            window: float = 3.0, skip_bytes: int = 0) -> dict[str, Any]:
    """Stream from ``sender`` to ``address:port`` (which ``receiver`` owns); the receiver's report:
    ``bits_per_s`` over ``window`` seconds that start once ``skip`` seconds and ``skip_bytes`` bytes have
    passed (a token bucket's initial burst), and the ``total`` bytes it got."""
    recv = receiver.popen([sys.executable, "-c", _RECEIVER, address, str(port), str(skip), str(window),
                           str(skip_bytes)], stdout=-1, stderr=-1, text=True)
    try:
        assert recv.stdout is not None
        line = recv.stdout.readline()
        assert line.strip() == "ready", (line, recv.stderr.read() if recv.stderr else "")
        budget = skip + window + 30
        send = sender.popen([sys.executable, "-c", _SENDER, address, str(port), str(budget)],
                            stdout=-1, stderr=-1, text=True)
        try:
            out, err = recv.communicate(timeout=budget + 20)
        finally:
            send.kill()
            send.wait()
        assert recv.returncode == 0, err
        return json.loads(out.strip().splitlines()[-1])
    finally:
        if recv.poll() is None:
            recv.kill()
            recv.wait()
