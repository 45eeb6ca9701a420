"""tap through libcni (Go v1.1.1 has no tap): the device and its settings, a bridge in the container, CHECK, DEL
leaving nothing, a second DEL fine, a refused ADD leaving nothing."""

from __future__ import annotations

from pathlib import Path

from tests.e2e_links import links
from tests.helpers import net


def test_tap_with_every_setting(cnitool, make_container_ns, tmp_path: Path):
    ctr = make_container_ns(lo_up=True)
    ctr.ip("link", "add", "cntbr", "type", "bridge")
    plugin = {"type": "tap", "multiQueue": True, "owner": 1234, "group": 5678, "mtu": 1400,
              "mac": "02:00:00:00:00:0a", "bridge": "cntbr"}
    cnitool.write_conflist(links.conflist("cnttap", plugin, tmp_path))
    add = cnitool.add("cnttap", ctr, ifname="tap0")
    assert add.rc == 0, add
    lk = net.link(ctr, "tap0")
    info = lk["linkinfo"]["info_data"]
    assert lk["linkinfo"]["info_kind"] == "tun" and info["type"] == "tap"
    assert info["multi_queue"] and info["persist"] and not info["pi"] and not info["vnet_hdr"]
    assert (info["user"], info["group"]) == (1234, 5678)
    assert lk["mtu"] == 1400 and lk["address"] == "02:00:00:00:00:0a" and lk["master"] == "cntbr"
    assert add.out["interfaces"] == [{"name": "tap0", "mac": "02:00:00:00:00:0a", "sandbox": ctr.path}]
    assert [ip["interface"] for ip in add.out["ips"]] == [0]
    assert net.ip_addresses(ctr, "tap0") == [add.out["ips"][0]["address"]]
    assert cnitool.check("cnttap", ctr, ifname="tap0").rc == 0
    assert cnitool.delete("cnttap", ctr, ifname="tap0").rc == 0
    assert net.link(ctr, "tap0") is None and links.leases(tmp_path, "cnttap") == []
    assert cnitool.delete("cnttap", ctr, ifname="tap0").rc == 0


def test_plain_tap_without_ipam(cnitool, make_container_ns):
    ctr = make_container_ns()
    cnitool.write_conflist(links.conflist("cnttap", {"type": "tap"}, None))
    add = cnitool.add("cnttap", ctr)
    assert add.rc == 0, add
    info = net.link(ctr, "eth0")["linkinfo"]["info_data"]
    assert not info["multi_queue"] and "user" not in info and "group" not in info
    assert cnitool.delete("cnttap", ctr).rc == 0 and links.only_lo(ctr)


def test_missing_bridge_fails_and_leaves_nothing(cnitool, make_container_ns, tmp_path: Path):
    ctr = make_container_ns()
    cnitool.write_conflist(links.conflist("cnttap", {"type": "tap", "bridge": "cntnobr"}, tmp_path))
    add = cnitool.add("cnttap", ctr)
    assert add.rc == 1 and "failed to get bridge cntnobr" in add.out["msg"], add
    assert links.only_lo(ctr) and links.leases(tmp_path, "cnttap") == []


def test_ipv6_does_not_wait_for_dad_on_a_tap_without_carrier(cnitool, make_container_ns, tmp_path: Path):
    """No hypervisor has opened the tap yet: no carrier, so DAD cannot finish; the ADD must not wait for it (the
    wait would end in a failure after 5 s)."""
    ctr = make_container_ns()
    conf = links.conflist("cnttap6", {"type": "tap"}, tmp_path, subnet="fd61::/64")
    conf["plugins"][0]["ipam"]["routes"] = [{"dst": "::/0"}]
    cnitool.write_conflist(conf)
    add = cnitool.add("cnttap6", ctr, timeout=4)
    assert add.rc == 0, add
    assert net.ip_addresses(ctr, "eth0") == ["fd61::2/64"]
    assert any(r["dst"] == "default" and r.get("gateway") == "fd61::1" for r in net.routes(ctr, family=6))
    assert cnitool.delete("cnttap6", ctr).rc == 0 and links.only_lo(ctr)
