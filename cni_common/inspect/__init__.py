"""``cni-suite inspect``: what CNI built on a node, as text, JSON or an SVG picture, and what is orphaned.

Read only: it runs ``ip``, ``bridge``, ``iptables-save`` and ``nft list`` inside the inspected namespace and
reads host-local's and libcni's files; it creates no namespace and writes nothing but the ``--output`` file the
user names. Three steps, one module each: :mod:`.collect` (read), :mod:`.model` (join, find orphans),
:mod:`.render_text` / :mod:`.render_svg` (show). No plugin imports this package.

    cni-suite inspect [--netns NS] [--format text|json|svg] [--data-dir DIR] [--cache-dir DIR] [-o FILE]
    .venv/bin/python -m cni_common.inspect ...        # the same, from the source tree
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from typing import Optional, Sequence

from ..warm.status import warm_processes
from .collect import DEFAULT_CACHE_DIR, DEFAULT_DATA_DIR, collect
from .model import build


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="cni-suite inspect",
        description="Show the CNI attachments of a node (bridges, containers, addresses, rules, overlay peers) "
                    "and what is orphaned. Read only.")
    parser.add_argument("--netns", help="inspect this network namespace (a name in /run/netns or a path) "
                                        "instead of the current one")
    parser.add_argument("--format", choices=("text", "json", "svg"), default="text")
    parser.add_argument("--data-dir", action="append", dest="data_dirs", metavar="DIR",
                        help=f"host-local dataDir (repeatable; default {DEFAULT_DATA_DIR})")
    parser.add_argument("--cache-dir", default=DEFAULT_CACHE_DIR, metavar="DIR",
                        help=f"libcni cache dir, holding results/ (default {DEFAULT_CACHE_DIR})")
    parser.add_argument("-o", "--output", metavar="FILE", help="write there (atomically) instead of stdout")
    return parser.parse_args(argv)


def render(node: dict, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(node, indent=2) + "\n"
    if fmt == "svg":
        from .render_svg import render as render_svg

        return render_svg(node)
    from .render_text import render as render_text

    return render_text(node)


def write_atomically(path: str, text: str) -> None:
    """The one file inspect writes: a temp file in the target's directory, then a rename over it."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".inspect-")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def main(argv: Optional[Sequence[str]] = None) -> int:
    opts = parse_args(argv)
    try:
        snapshot = collect(opts.netns, opts.data_dirs or [DEFAULT_DATA_DIR], opts.cache_dir)
    except OSError as exc:
        print(f"cni-suite inspect: {exc}", file=sys.stderr)
        return 1
    node = build(snapshot)
    node["warm"] = warm_processes()
    text = render(node, opts.format)
    if opts.output:
        try:
            write_atomically(opts.output, text)
        except OSError as exc:  # a missing folder, no permission: one line, not a traceback
            print(f"cni-suite inspect: cannot write {opts.output}: {exc.strerror or exc}", file=sys.stderr)
            return 1
    else:
        sys.stdout.write(text)
    return 0
