"""What a built file carries: its platform and the versions of the C library and Python inside it.

``build.sh`` writes ``build-info`` (``key=value`` lines: ``platform``, ``glibc``, ``musl`` (the launcher's),
``python``, ``zlib``, ``openssl``, the distribution's package versions) next to this module in the bundle; the
release tarball's README lists the same. A plugin run by hand (no ``CNI_COMMAND``) prints it, so a user can
tell which C library a file on a node carries, e.g. to know whether a glibc security fix is in it
(docs/packaging.md). Outside a build (``python -m``, tests) there is no such file and nothing is printed.
"""

from __future__ import annotations

import os

BUILD_INFO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "build-info")
_LABELS = (("platform", "{}"), ("glibc", "glibc {}"), ("musl", "musl {} (the launcher)"), ("python", "Python {}"),
           ("zlib", "zlib {}"), ("openssl", "OpenSSL {}"))


def parse(text: str) -> dict[str, str]:
    """The ``key=value`` lines of a build-info file (the release tarball's README reads them too)."""
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def bundled_line() -> str:
    """``Bundled (Debian package versions): linux/amd64, glibc 2.36-9+deb12u13, ...`` or ``""``."""
    try:
        with open(BUILD_INFO, encoding="utf-8") as f:
            info = parse(f.read())
    except OSError:
        return ""
    parts = [label.format(info[key]) for key, label in _LABELS if info.get(key)]
    return f"Bundled (Debian package versions): {', '.join(parts)}" if parts else ""
