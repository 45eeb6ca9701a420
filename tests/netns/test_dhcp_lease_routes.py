"""The routes of a DHCP lease from dnsmasq's options 121 and 33, as upstream's dhcp plugin returns them: option
121's routes alone when the server sends it (a router of 0.0.0.0 is a link route), else option 33's and the default
route through the router. All inside test namespaces (tests/helpers/dhcp_lab)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.helpers.dhcp_lab import SERVER_IP, SUBNET, DhcpLab
from tests.helpers.netns import NetnsPool

pytestmark = [pytest.mark.netns]


def _lease(pool: NetnsPool, tmp_path: Path, options: tuple[str, ...], request: list[str]) -> dict:
    if shutil.which("dnsmasq") is None:
        pytest.fail("dnsmasq is missing: .ci/setup installs dnsmasq-base")
    lab = DhcpLab(pool, tmp_path).up(options=options)
    try:
        lab.start_daemon()
        ctr = lab.container()
        proc = lab.call("ADD", ctr, lab.conf(request=[{"option": name} for name in request]))
        assert proc.returncode == 0, proc.stdout + proc.stderr
        result = json.loads(proc.stdout)
        assert lab.call("DEL", ctr).returncode == 0
        return result
    finally:
        lab.down()


def test_classless_routes_replace_the_others(pool: NetnsPool, tmp_path: Path) -> None:
    result = _lease(pool, tmp_path, ("121,10.90.0.0/16,10.79.0.1,192.168.77.0/24,0.0.0.0",
                                     "33,172.20.0.0,10.79.0.1"),
                    ["classless-static-routes", "static-routes"])
    assert result["ips"][0]["gateway"] == SERVER_IP
    assert result["routes"] == [{"dst": "10.90.0.0/16", "gw": SERVER_IP},
                                {"dst": "192.168.77.0/24", "gw": "0.0.0.0", "scope": 253}]


def test_static_routes_then_the_default_route(pool: NetnsPool, tmp_path: Path) -> None:
    result = _lease(pool, tmp_path, ("33,172.20.0.0,10.79.0.1,10.0.0.0,10.79.0.1",), ["static-routes"])
    assert result["routes"] == [{"dst": "172.20.0.0/16", "gw": SERVER_IP}, {"dst": "10.0.0.0/8", "gw": SERVER_IP},
                                {"dst": "0.0.0.0/0", "gw": SERVER_IP}]


def test_without_them_the_default_route_only(pool: NetnsPool, tmp_path: Path) -> None:
    result = _lease(pool, tmp_path, ("121,10.90.0.0/16,10.79.0.1",), [])  # not requested: not sent
    assert result["routes"] == [{"dst": "0.0.0.0/0", "gw": SERVER_IP}]
    assert result["ips"][0]["address"].startswith(SUBNET + ".")
