"""Result conversion across every spec version (checklist section 4.4)."""

import pytest

from cni_common.errors import CNIError, ErrorCode
from cni_common.types import Result
from cni_common.version import SUPPORTED_VERSIONS

V1_RESULT = {
    "cniVersion": "1.1.0",
    "interfaces": [
        {"name": "cni0", "mac": "00:11:22:33:44:55"},
        {"name": "veth1234abcd", "mac": "00:11:22:33:44:66"},
        {"name": "eth0", "mac": "00:11:22:33:44:77", "sandbox": "/run/netns/x", "mtu": 1400},
    ],
    "ips": [
        {"interface": 2, "address": "10.1.0.5/16", "gateway": "10.1.0.1"},
        {"interface": 2, "address": "fd00::5/64", "gateway": "fd00::1"},
    ],
    "routes": [{"dst": "0.0.0.0/0", "gw": "10.1.0.1", "priority": 5}, {"dst": "::/0"}],
    "dns": {"nameservers": ["10.1.0.1"], "search": ["example.test"]},
}


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_round_trip_keeps_what_each_version_can_carry(version):
    out = Result.from_dict(V1_RESULT, "1.1.0").to_dict(version)
    assert out["cniVersion"] == version
    again = Result.from_dict(out, version)
    assert [str(i.address) for i in again.ips] == ["10.1.0.5/16", "fd00::5/64"]
    assert again.dns.nameservers == ["10.1.0.1"]


def test_040_has_ip_version_and_no_11_fields():
    out = Result.from_dict(V1_RESULT, "1.1.0").to_dict("0.4.0")
    assert [ip["version"] for ip in out["ips"]] == ["4", "6"]
    assert "mtu" not in out["interfaces"][2]
    assert out["ips"][0]["interface"] == 2


def test_100_drops_ip_version():
    out = Result.from_dict(V1_RESULT, "1.1.0").to_dict("1.0.0")
    assert all("version" not in ip for ip in out["ips"])
    assert out["routes"][0] == {"dst": "0.0.0.0/0", "gw": "10.1.0.1", "priority": 5}


def test_legacy_form_keeps_first_ip_per_family_and_routes_by_family():
    out = Result.from_dict(V1_RESULT, "1.1.0").to_dict("0.2.0")
    assert out["ip4"] == {"ip": "10.1.0.5/16", "gateway": "10.1.0.1",
                          "routes": [{"dst": "0.0.0.0/0", "gw": "10.1.0.1"}]}
    assert out["ip6"]["ip"] == "fd00::5/64"
    assert "interfaces" not in out


def test_legacy_conversion_without_ips_fails():
    with pytest.raises(CNIError, match="no valid IP addresses"):
        Result(cni_version="1.0.0").to_dict("0.1.0")


def test_reads_legacy_input():
    res = Result.from_dict({"cniVersion": "0.2.0", "ip4": {"ip": "10.0.0.2/24", "gateway": "10.0.0.1",
                                                            "routes": [{"dst": "0.0.0.0/0"}]}}, "0.2.0")
    assert str(res.ips[0].address) == "10.0.0.2/24"
    assert str(res.routes[0].dst) == "0.0.0.0/0"


def test_missing_version_uses_the_config_version():
    res = Result.from_dict({"ips": [{"version": "4", "address": "10.0.0.2/24"}]}, "0.4.0")
    assert res.cni_version == "0.4.0"


@pytest.mark.parametrize("version", ["1.0.1", "1.2.0", "2.0.0"])
def test_unknown_versions_are_refused(version):
    with pytest.raises(CNIError) as err:
        Result().to_dict(version)
    assert err.value.code == ErrorCode.INCOMPATIBLE_VERSION


@pytest.mark.parametrize("bad", [
    {"ips": [{"address": "10.0.0.300/24"}]},
    {"ips": [{"address": "10.0.0.3"}]},
    {"ips": "nope"},
    {"routes": [{"dst": "banana"}]},
    {"dns": []},
])
def test_malformed_results_are_decoding_errors(bad):
    with pytest.raises(CNIError) as err:
        Result.from_dict({"cniVersion": "1.0.0", **bad}, "1.0.0")
    assert err.value.code == ErrorCode.DECODING_FAILURE


def test_empty_dns_and_missing_sections_are_fine():
    res = Result.from_dict({"cniVersion": "1.0.0", "dns": {}}, "1.0.0")
    assert res.ips == [] and res.dns.is_empty()
