"""Our host-local as the IPAM of the upstream Go bridge, driven through libcni, as a runtime would.

This is how host-local really runs: a main plugin finds it in CNI_PATH and execs it with the same env and
stdin. The Go bridge must get our addresses onto the containers' interfaces (they then reach each other and the
gateway), and its DEL must release every reservation.
"""

from __future__ import annotations

from pathlib import Path

from tests.helpers import net, paths

NET = "cnt-i-net"


def test_go_bridge_with_our_host_local(make_cnitool, make_container_ns, plugin_dir, go_plugin_dir, tmp_path):
    bin_dir = paths.make_bin_dir(tmp_path / "bin", {"bridge": go_plugin_dir / "bridge",
                                                   "host-local": plugin_dir / "host-local"})
    tool = make_cnitool(bin_dir)
    data_dir = tmp_path / "ipam"
    tool.write_conflist({
        "cniVersion": "1.0.0", "name": NET,
        "plugins": [{"type": "bridge", "bridge": "cntibr0", "isGateway": True,
                     "ipam": {"type": "host-local", "dataDir": str(data_dir),
                              "ranges": [[{"subnet": "10.78.0.0/24"}], [{"subnet": "fd78::/64"}]],
                              "routes": [{"dst": "0.0.0.0/0"}]}}],
    })
    containers = [make_container_ns(), make_container_ns()]
    results = []
    for ctr in containers:
        res = tool.add(NET, ctr)
        assert res.rc == 0, res
        results.append(res.out)
    addresses = [[ip["address"] for ip in out["ips"]] for out in results]
    assert addresses == [["10.78.0.2/24", "fd78::2/64"], ["10.78.0.3/24", "fd78::3/64"]]
    reservations = _reservations(data_dir)
    assert reservations == {"10.78.0.2", "10.78.0.3", "fd78::2", "fd78::3"}

    first, second = containers
    assert net.ping(first, "10.78.0.3") and net.ping(second, "10.78.0.2")
    assert net.ping(first, "10.78.0.1") and net.ping(second, "10.78.0.1")
    for ctr in containers:
        assert tool.check(NET, ctr).rc == 0

    for ctr in containers:
        res = tool.delete(NET, ctr)
        assert res.rc == 0, res
        assert net.link(ctr, "eth0") is None
    assert _reservations(data_dir) == set()


def _reservations(data_dir: Path) -> set[str]:
    """The reserved addresses: every file of the network's directory that names an IP."""
    names = {p.name for p in (data_dir / NET).iterdir()}
    return {n for n in names if n != "lock" and not n.startswith(("last_reserved_ip.", "."))}
