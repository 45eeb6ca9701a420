"""loopback, ptp and static in-process (tests/helpers/inprocess.py stops every call at the kernel): what static
answers for each source of addresses, its CHECK, and what ptp and loopback refuse before the node changes.
Their kernel work is tested through libcni in tests/netns/test_ptp_parity.py and test_loopback_static_parity.py."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers import inprocess

pytestmark = pytest.mark.usefixtures("no_kernel")


def static(addresses: list[dict[str, Any]] | None = None, version: str = "1.0.0", **top: Any) -> dict[str, Any]:
    ipam: dict[str, Any] = {"type": "static", "routes": [{"dst": "0.0.0.0/0", "priority": 5}]}
    if addresses is not None:
        ipam["addresses"] = addresses
    return {"cniVersion": version, "name": "cnts", "type": "ptp", "ipam": ipam, **top}


def ips(result: inprocess.Outcome) -> list[tuple[str, Any]]:
    assert result.rc == 0, result.out
    return [(ip["address"], ip.get("gateway")) for ip in result.out.get("ips", [])]


def test_static_sources_in_upstreams_order_and_gateway_for_every_address():
    conf = static([{"address": "10.10.0.1/24"}, {"address": "3ffe:ffff:0:01ff::1/64", "gateway": "3ffe:ffff:0:1ff::9"}])
    assert ips(inprocess.call("static", "ADD", conf)) == [("10.10.0.1/24", None),
                                                          ("3ffe:ffff:0:1ff::1/64", "3ffe:ffff:0:1ff::9")]
    env = {"CNI_ARGS": "IgnoreUnknown=1;K8S_POD_NAME=web;IP=10.20.0.5/16;GATEWAY=10.10.0.254,10.20.0.1"}
    assert ips(inprocess.call("static", "ADD", conf, env)) == [
        ("10.10.0.1/24", "10.10.0.254"), ("3ffe:ffff:0:1ff::1/64", "3ffe:ffff:0:1ff::9"), ("10.20.0.5/16", "10.20.0.1")]
    replaced = dict(conf, args={"cni": {"ips": ["10.30.0.5/24"]}})
    assert ips(inprocess.call("static", "ADD", replaced, env)) == [("10.30.0.5/24", None)]
    replaced["runtimeConfig"] = {"ips": ["10.20.9.9/16", "fd00::9/64"]}
    assert ips(inprocess.call("static", "ADD", replaced, env)) == [("10.20.9.9/16", "10.20.0.1"), ("fd00::9/64", None)]


def test_static_result_keeps_routes_and_dns_and_needs_no_address():
    conf = static([])
    conf["ipam"]["dns"] = {"nameservers": ["10.10.0.53"], "search": ["svc.test"]}
    result = inprocess.call("static", "ADD", conf)
    assert result.rc == 0 and "ips" not in result.out and "interfaces" not in result.out, result.out
    assert result.out["routes"] == [{"dst": "0.0.0.0/0", "priority": 5}]
    assert result.out["dns"] == {"nameservers": ["10.10.0.53"], "search": ["svc.test"]}


def test_static_legacy_versions_get_the_ip4_shape():
    result = inprocess.call("static", "ADD", static([{"address": "10.10.0.1/24", "gateway": "10.10.0.254"}], "0.2.0"))
    assert result.rc == 0 and result.out["ip4"] == {"ip": "10.10.0.1/24", "gateway": "10.10.0.254",
                                                    "routes": [{"dst": "0.0.0.0/0"}]}, result.out


def test_static_del_reads_no_config():
    assert inprocess.call("static", "DEL", static([{"address": "not an address"}])).rc == 0


@pytest.mark.parametrize("prev_ips, ok", [
    ([{"address": "10.10.0.1/24", "gateway": "10.10.0.254"}, {"address": "10.10.1.1/24"}], True),
    ([{"address": "10.10.0.1/24", "gateway": "10.10.0.99"}, {"address": "10.10.1.1/24"}], False),  # gateway differs
    ([{"address": "10.10.0.1/24", "gateway": "10.10.0.254"}], False),  # upstream passes a missing address
])
def test_static_check_wants_every_address_with_its_gateway(prev_ips, ok):
    conf = static([{"address": "10.10.0.1/24", "gateway": "10.10.0.254"}, {"address": "10.10.1.1/24"}],
                  prevResult={"cniVersion": "1.0.0", "ips": prev_ips})
    result = inprocess.call("static", "CHECK", conf)
    assert (result.rc == 0) is ok, result.out
    if not ok:
        assert result.out["code"] == 106 and "static: Failed to match addr" in result.out["msg"]
    missing = inprocess.call("static", "CHECK", dict(conf, prevResult=None))
    assert missing.out["code"] == 7 and "prevResult" in missing.out["msg"]


def ptp(**top: Any) -> dict[str, Any]:
    return dict(static([{"address": "10.10.0.5/24", "gateway": "10.10.0.1"}]), ipMasq=True, **top)


def test_ptp_refuses_what_it_can_before_the_node_changes():
    for conf, env, code, word in [(ptp(ipMasqBackend="ebtables"), {}, 7, "ipMasqBackend"),
                                  (ptp(mtu=70000), {}, 7, "mtu"),
                                  (ptp(), {"CNI_PATH": None}, 4, "CNI_PATH"),
                                  (ptp(), {"CNI_PATH": "/nonexistent-cnt"}, 104, "static")]:
        result = inprocess.call("ptp", "ADD", conf, env)
        assert result.rc == 1 and not result.reached_kernel, result.out
        assert result.out["code"] == code and word in result.out["msg"], result.out
    assert inprocess.call("ptp", "ADD", ptp(), {"CNI_PATH": "/usr/lib/cni"}).reached_kernel


def test_ptp_del_removes_both_layouts_whatever_the_backend_says():
    assert inprocess.call("ptp", "DEL", ptp(ipMasqBackend="ebtables")).reached_kernel


def test_loopback_del_without_a_netns_is_done_without_the_kernel():
    conf = {"cniVersion": "1.0.0", "name": "cntl", "type": "loopback"}
    assert inprocess.call("loopback", "DEL", conf, {"CNI_NETNS": None}).rc == 0
    assert inprocess.call("loopback", "ADD", conf).reached_kernel
    assert inprocess.call("loopback", "GC", dict(conf, cniVersion="1.1.0"), {"CNI_PATH": "/x"}).rc == 0


def test_static_replacing_addresses_keep_the_gateway_configured_for_their_subnet():
    """Upstream drops every gateway with runtimeConfig ``ips``, so ptp (which needs one) cannot use them."""
    conf = static([{"address": "10.10.0.1/24", "gateway": "10.10.0.254"}],
                  runtimeConfig={"ips": ["10.10.0.7/24", "10.11.0.7/24"]})
    assert ips(inprocess.call("static", "ADD", conf)) == [("10.10.0.7/24", "10.10.0.254"), ("10.11.0.7/24", None)]
