"""Proves the harness itself with the Go reference plugins only (no code of ours).

bridge + host-local + portmap from /usr/lib/cni, run through the libcni driver
inside a throwaway host namespace: two containers get addresses, reach each
other, a hostPort forwards to one of them, and DEL gives everything back.
"""

from __future__ import annotations

from pathlib import Path

from tests.helpers import net
from tests.helpers.cnitool import Cnitool


def conflist(data_dir: Path) -> dict:
    return {
        "cniVersion": "1.0.0",
        "name": "cnt-smoke",
        "plugins": [
            {"type": "bridge", "bridge": "cntbr0", "isGateway": True, "ipMasq": True,
             "ipam": {"type": "host-local", "subnet": "10.99.0.0/24", "dataDir": str(data_dir)}},
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def test_two_containers_ping_and_hostport(go_cnitool: Cnitool, host_ns, make_container_ns, tmp_path: Path):
    data_dir = tmp_path / "ipam"
    go_cnitool.write_conflist(conflist(data_dir))
    c1, c2 = make_container_ns(), make_container_ns()

    ports = {"portMappings": [{"hostPort": 18080, "containerPort": 80, "protocol": "tcp"}]}
    add1 = go_cnitool.add("cnt-smoke", c1, cap_args=ports)
    assert add1.rc == 0, add1
    add2 = go_cnitool.add("cnt-smoke", c2)
    assert add2.rc == 0, add2
    ip1 = add1.out["ips"][0]["address"].split("/")[0]
    ip2 = add2.out["ips"][0]["address"].split("/")[0]
    assert ip1 != ip2
    assert net.ip_addresses(c1, "eth0") == [add1.out["ips"][0]["address"]]
    assert go_cnitool.check("cnt-smoke", c1).rc == 0

    assert net.ping(c1, ip2)
    assert net.ping(c2, ip1)
    with net.serve(c1, "tcp", 80):
        # hostPort on the gateway address, from the other container.
        assert net.tcp_connect(c2, "10.99.0.1", 18080) is not None
    with net.serve(c2, "udp", 5353):
        assert net.udp_connect(c1, ip2, 5353) == ip1

    # DEL needs the same capability args as ADD (libcni 1.1.2 does not take
    # them from its cache; Go portmap deletes nothing without portMappings).
    for ns, caps in ((c1, ports), (c2, None)):
        res = go_cnitool.delete("cnt-smoke", ns, cap_args=caps)
        assert res.rc == 0, res
        assert net.link(ns, "eth0") is None
    assert go_cnitool.cache_files() == []
    assert sorted(p.name for p in (data_dir / "cnt-smoke").iterdir()) == ["last_reserved_ip.0", "lock"]
    nat = host_ns.run(["iptables-save", "-t", "nat"]).stdout
    assert "CNI-DN-" not in nat and "10.99.0." not in nat


def test_driver_reports_cni_error_code(go_cnitool: Cnitool, make_container_ns, tmp_path: Path):
    """A plugin error reaches the test as libcni surfaced it, code included."""
    conf = conflist(tmp_path / "ipam")
    conf["plugins"][0]["ipam"]["type"] = "cnt-no-such-ipam"
    go_cnitool.write_conflist(conf)
    res = go_cnitool.add("cnt-smoke", make_container_ns())
    assert res.rc == 1
    assert res.out["code"] == 999 and "cnt-no-such-ipam" in res.out["msg"]
    assert go_cnitool.version("cnt-smoke").out["supportedVersions"][-1] == "1.0.0"
