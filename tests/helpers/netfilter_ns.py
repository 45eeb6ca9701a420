"""A bare network namespace for the netfilter code's tests, and running code inside it (the code under test acts
on the namespace of the calling thread, as a plugin's does)."""

from __future__ import annotations

import os
import secrets
import subprocess
from typing import Any, Callable, Iterator

import pytest

from cni_common.netfilter import handles
from cni_common.netns import NetNS
from tests.helpers.netns import Netns


def bare_netns(prefix: str) -> Iterator[Netns]:
    """A fresh namespace named ``<prefix><random>`` (for a fixture to yield from); afterwards the nft handle
    records kept for it are forgotten (they outlive its tables) and it is deleted."""
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")
    made = Netns(f"{prefix}{secrets.token_hex(3)}")
    subprocess.run(["ip", "netns", "add", made.name], check=True)
    try:
        yield made
    finally:
        inside(made, handles.forget_namespace)
        subprocess.run(["ip", "netns", "del", made.name], check=False)


def inside(ns: Netns, fn: Callable[[], Any]) -> Any:
    """``fn()`` run with this thread in ``ns``."""
    with NetNS(ns.path) as handle, handle.entered():
        return fn()
