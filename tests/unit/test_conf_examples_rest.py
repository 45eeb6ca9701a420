"""The conf-examples no netns or e2e test runs as they are: the vxlan conflists (40, 41: their etcd cluster and
peers are the operator's), macvlan + dhcp (73: its DHCP server is the operator's), the dhcp daemon's systemd
units and the vxlan agent's unit and DaemonSet. In-process, never the kernel: each config passes its plugin's
validation (the call reaches the kernel guard, or vxlan's IPAM), and the files that start a mode name one the
suite has, with paths that agree with each other."""

from __future__ import annotations

import configparser
import json
import shlex
import tempfile
from pathlib import Path

import pytest
import yaml

from cni_common.dhcp import wire
from plugins.multicall import MODES
from tests.helpers import inprocess
from tests.helpers.paths import REPO

EXAMPLES = REPO / "conf-examples"
CONFLISTS = ["40-vxlan-etcd.conflist", "41-vxlan-static.conflist", "73-macvlan-dhcp.conflist"]


@pytest.fixture(autouse=True)
def guard(monkeypatch):
    with tempfile.TemporaryDirectory(prefix="cnt-examples-") as data_dir:
        inprocess.install_guard(monkeypatch, data_root=data_dir)
        yield


def first_plugin(name: str) -> dict:
    """The conflist's first plugin as libcni hands it over (name and cniVersion copied in)."""
    conflist = json.loads((EXAMPLES / name).read_text())
    return {"cniVersion": conflist["cniVersion"], "name": conflist["name"], **conflist["plugins"][0]}


@pytest.mark.parametrize("name", CONFLISTS)
def test_conflist_passes_validation(name: str) -> None:
    conf = first_plugin(name)
    got = inprocess.call(conf["type"], "ADD", conf)
    # vxlan asks its IPAM (host-local, not on this test's CNI_PATH) before it touches the node
    asked_ipam = isinstance(got.out, dict) and got.out.get("msg", "").startswith("failed to find plugin 'host-local'")
    assert got.reached_kernel or asked_ipam, got


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.read_string((EXAMPLES / name).read_text())
    return parser


def mode_of(argv: list[str]) -> tuple[str, ...]:
    """The multicall mode the words after the plugin file's path start (as multicall.main finds it)."""
    words = [Path(argv[0]).name, *argv[1:]]
    keys = [key for key in MODES if tuple(words[:len(key)]) == key]
    assert keys, f"{argv} starts no mode of {sorted(MODES)}"
    return keys[0]


def test_dhcp_units_agree_with_the_daemon_and_the_example() -> None:
    service, socket = unit("cni-dhcp.service"), unit("cni-dhcp.socket")
    assert mode_of(shlex.split(service["Service"]["ExecStart"])) == ("dhcp", "daemon")
    listen = socket["Socket"]["ListenStream"]
    assert listen == wire.DEFAULT_SOCKET_PATH  # the daemon, started without -socketpath, takes this socket
    assert first_plugin("73-macvlan-dhcp.conflist")["ipam"]["daemonSocketPath"] == listen


def test_vxlan_agent_unit_and_daemonset_start_the_agent_on_an_example() -> None:
    argv = shlex.split(unit("vxlan-agent.service")["Service"]["ExecStart"])
    docs = [d for d in yaml.safe_load_all((EXAMPLES / "vxlan-agent-daemonset.yaml").read_text()) if d]
    daemonset = next(d for d in docs if d["kind"] == "DaemonSet")
    commands = [c["command"] for c in daemonset["spec"]["template"]["spec"]["containers"]
                if "agent" in c.get("command", [])]
    assert commands
    for command in [argv, *commands]:
        assert mode_of(command) == ("vxlan", "agent")
        conf = Path(command[command.index("--conf") + 1])
        assert (EXAMPLES / conf.name).is_file(), f"{conf} is not one of conf-examples/"
