"""The built files on nodes other than the build machine: Debian 11 (glibc 2.31) and a root with no glibc at all.

The files carry their own loader and C library (docs/packaging.md), so they must run wherever the kernel is
Linux: here in a Debian 11 root filesystem made by debootstrap, with its own iptables 1.8.7 doing the plugins'
netfilter work, and in a root holding only busybox and musl. Every plugin runs chrooted, exec'd with the CNI
environment as that node's runtime would exec it (tests/portability/rootfs.py).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Iterator

import pytest

from cni_common.version import version_info_json
from tests.helpers import net
from tests.helpers.netns import Netns
from tests.helpers.paths import OUR_PLUGINS
from tests.portability.rootfs import BIN_DIR, Plugin, install_plugins, rootfs, run_in_root

ROOTS = ("bullseye", "musl")
DATA_DIR = "/var/lib/cni-test-networks"  # inside the root


def prepared_root(name: str) -> Iterator[Path]:
    """A root filesystem with the plugins installed and no IPAM state (the roots are kept between runs, in
    build/rootfs); afterwards, no bind mount of a call may be left under it."""
    if os.geteuid() != 0:
        pytest.skip("chroot needs root")
    path = rootfs(name)
    install_plugins(path)
    data = path / DATA_DIR.lstrip("/")
    shutil.rmtree(data, ignore_errors=True)
    yield path
    shutil.rmtree(data, ignore_errors=True)
    mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
    assert not [m for m in mounts if m.startswith(str(path))], "a call's bind mounts outlived it"


@pytest.fixture(params=ROOTS)
def root(request: pytest.FixtureRequest) -> Iterator[Path]:
    """Each root filesystem in turn."""
    yield from prepared_root(request.param)


@pytest.fixture
def bullseye() -> Iterator[Path]:
    yield from prepared_root("bullseye")


@pytest.fixture
def musl() -> Iterator[Path]:
    yield from prepared_root("musl")


def ipam_conf(subnet: str = "10.93.0.0/24") -> dict[str, Any]:
    return {"cniVersion": "1.0.0", "name": "cnt-p-net",
            "ipam": {"type": "host-local", "subnet": subnet, "dataDir": DATA_DIR}}


def reservations(root: Path) -> list[str]:
    folder = root / DATA_DIR.lstrip("/") / "cnt-p-net"
    return sorted(n for n in os.listdir(folder) if n[0].isdigit()) if folder.exists() else []


def test_the_musl_root_has_no_glibc(musl: Path) -> None:
    """The premise of the musl case: nothing in that root but busybox, musl and our files."""
    found = [str(p) for p in musl.rglob("*") if p.name.startswith(("libc.so.6", "ld-linux"))
             and "cni-suite" not in p.parts]
    assert found == [] and (musl / "lib" / "ld-musl-x86_64.so.1").exists()


def test_version_and_about(root: Path) -> None:
    for plugin_type in OUR_PLUGINS:
        proc = run_in_root(root, [f"{BIN_DIR}/{plugin_type}"], {"CNI_COMMAND": "VERSION"})
        assert proc.returncode == 0 and proc.stdout == version_info_json(), proc.stdout + proc.stderr
    proc = run_in_root(root, [f"{BIN_DIR}/bridge"])  # by hand: the about lines, from Python (unpacks)
    assert proc.returncode == 0 and proc.stdout == "", proc.stdout + proc.stderr
    assert proc.stderr.startswith("CNI bridge plugin v") and " glibc 2." in proc.stderr


def test_host_local_add_check_del(root: Path) -> None:
    host_local = Plugin(root, "host-local")
    conf = ipam_conf()
    rc, out, err = host_local.call("ADD", conf, container_id="p1", netns="/proc/1/ns/net")
    assert rc == 0, (out, err)
    assert out["ips"][0]["address"] == "10.93.0.2/24" and reservations(root) == ["10.93.0.2"]
    check = dict(conf, prevResult=out)
    rc, out, err = host_local.call("CHECK", check, container_id="p1", netns="/proc/1/ns/net")
    assert rc == 0 and out is None, (out, err)
    rc, out, err = host_local.call("DEL", conf, container_id="p1")
    assert rc == 0 and out is None, (out, err)
    assert reservations(root) == []


# The chain a node's runtime runs for a pod: bridge (host-local in it) then portmap, each with the previous
# result; CHECK and DEL with the final one, DEL in reverse order. Once with the iptables backend (the root's
# iptables 1.8.7), once with nftables (the root's nft 0.9.8).
def chain_plugins(backend: str) -> list[dict[str, Any]]:
    nft = {"iptables": {}, "nftables": {"backend": "nftables"}}[backend]
    return [{"type": "bridge", "bridge": "cntp0", "isGateway": True, "ipMasq": True,
             **({"ipMasqBackend": "nftables"} if nft else {}),
             "ipam": {"type": "host-local", "subnet": "10.94.0.0/24", "dataDir": DATA_DIR}},
            {"type": "portmap", "capabilities": {"portMappings": True}, "snat": True, **nft}]


CHAIN_NAME = "cnt-p-chain"
HOST_PORT = 18080


def _plugin_conf(plugin: dict[str, Any], prev: Any, mappings: list[dict[str, Any]]) -> dict[str, Any]:
    conf = {"cniVersion": "1.0.0", "name": CHAIN_NAME, **plugin}
    if plugin.get("capabilities", {}).get("portMappings"):
        conf["runtimeConfig"] = {"portMappings": mappings}
    if prev is not None:
        conf["prevResult"] = prev
    return conf


def chain(root: Path, host: Netns, plugins: list[dict[str, Any]], verb: str, cid: str, ns: Netns,
          prev: Any = None, mappings: list[dict[str, Any]] = ()) -> Any:
    order = plugins if verb != "DEL" else list(reversed(plugins))
    result = prev
    for plugin in order:
        conf = _plugin_conf(plugin, result if verb == "ADD" else prev, list(mappings))
        rc, out, err = Plugin(root, plugin["type"], host).call(verb, conf, container_id=cid, netns=ns.path)
        assert rc == 0, f"{plugin['type']} {verb}: {out} {err}"
        if verb == "ADD":
            result = out
    return result


def leftovers(root: Path, host: Netns, needles: list[str]) -> list[str]:
    """What a DEL should have removed: veths on the host, rules naming the pods, IP reservations."""
    found = [link["ifname"] for link in net.links(host) if link["ifname"].startswith("veth")]
    for tool in (["iptables-save"], ["ip6tables-save"], ["nft", "list", "ruleset"]):
        proc = run_in_root(root, [f"/usr/sbin/{tool[0]}", *tool[1:]], host=host)
        assert proc.returncode == 0, proc.stderr
        found += [line for line in proc.stdout.splitlines() if any(n in line for n in needles)]
    return found + reservations(root).copy()


@pytest.mark.parametrize("backend", ["iptables", "nftables"])
def test_bridge_portmap_chain_with_traffic(bullseye: Path, backend: str, host_ns: Netns, make_container_ns) -> None:
    root, plugins = bullseye, chain_plugins(backend)
    a, b = make_container_ns(lo_up=True), make_container_ns(lo_up=True)
    mappings = [{"hostPort": HOST_PORT, "containerPort": 80, "protocol": "tcp"}]
    result_a = chain(root, host_ns, plugins, "ADD", "cntp-a", a, mappings=mappings)
    result_b = chain(root, host_ns, plugins, "ADD", "cntp-b", b)
    try:
        ip_a = result_a["ips"][0]["address"].split("/")[0]
        ip_b = result_b["ips"][0]["address"].split("/")[0]
        gateway = result_a["ips"][0]["gateway"]
        for cid, ns, result, maps in (("cntp-a", a, result_a, mappings), ("cntp-b", b, result_b, [])):
            chain(root, host_ns, plugins, "CHECK", cid, ns, prev=result, mappings=maps)
        assert net.ping(a, ip_b) and net.ping(b, ip_a)
        with net.serve(a, "tcp", 80, accepts=2):
            assert net.tcp_connect(host_ns, gateway, HOST_PORT) is not None  # the node, to its host port
            assert net.tcp_connect(b, gateway, HOST_PORT) is not None  # another pod, through the node
        up = leftovers(root, host_ns, [ip_a, "cntp-a"])  # the counters below do see a pod's traces
        assert any("18080" in line for line in up) and len([n for n in up if n.startswith("veth")]) == 2, up
    finally:
        chain(root, host_ns, plugins, "DEL", "cntp-a", a, prev=result_a, mappings=mappings)
        chain(root, host_ns, plugins, "DEL", "cntp-b", b, prev=result_b)
    assert leftovers(root, host_ns, [ip_a, ip_b, "cntp-a", "cntp-b"]) == []


def test_the_plugins_ran_the_roots_netfilter_tools(bullseye: Path) -> None:
    """The node's tools are what the plugins run: the Debian 11 root's iptables is 1.8.7 and its nft 0.9.8 (the
    machine's are newer), so the chains above used the root's."""
    proc = run_in_root(bullseye, ["/usr/sbin/iptables", "--version"])
    assert proc.returncode == 0 and "v1.8.7" in proc.stdout, proc.stdout + proc.stderr
    proc = run_in_root(bullseye, ["/usr/sbin/nft", "--version"])
    assert proc.returncode == 0 and "v0.9.8" in proc.stdout, proc.stdout + proc.stderr
