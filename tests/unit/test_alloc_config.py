"""host-local range config: upstream defaults and validation, each error naming the bad value (code 7)."""

from __future__ import annotations

import ipaddress

import pytest

from cni_common.alloc import config
from cni_common.errors import CNIError, ErrorCode

ip = ipaddress.ip_address


def conf(ipam: dict, **top) -> dict:
    return {"cniVersion": "1.0.0", "name": "net1", "ipam": {"type": "host-local", **ipam}, **top}


def load(ipam: dict, cni_args: dict | None = None, version: str = "1.0.0", **top) -> config.IPAMConfig:
    return config.load(conf(ipam, **top), cni_args or {}, version)


def test_defaults_v4():
    cfg = load({"ranges": [[{"subnet": "10.1.2.0/24"}]]})
    (rng,) = cfg.range_sets[0].ranges
    assert (rng.start, rng.end, rng.gateway) == (ip("10.1.2.1"), ip("10.1.2.254"), ip("10.1.2.1"))
    assert rng.size() == 253
    assert cfg.data_dir == "/var/lib/cni/networks" and cfg.name == "net1"


def test_defaults_v6_end_is_last_address():
    (rng,) = load({"ranges": [[{"subnet": "fd00::/120"}]]}).range_sets[0].ranges
    assert (rng.start, rng.end) == (ip("fd00::1"), ip("fd00::ff"))


def test_explicit_bounds_gateway_routes_datadir():
    cfg = load({"ranges": [[{"subnet": "10.1.2.0/24", "rangeStart": "10.1.2.10", "rangeEnd": "10.1.2.20",
                             "gateway": "10.1.2.254"}]],
                "routes": [{"dst": "0.0.0.0/0"}, {"dst": "192.168.0.0/16", "gw": "10.1.2.254"}],
                "dataDir": "/run/x", "resolvConf": "/etc/r"})
    (rng,) = cfg.range_sets[0].ranges
    assert (rng.start, rng.end, rng.gateway) == (ip("10.1.2.10"), ip("10.1.2.20"), ip("10.1.2.254"))
    assert [str(r.dst) for r in cfg.routes] == ["0.0.0.0/0", "192.168.0.0/16"]
    assert str(cfg.routes[1].gw) == "10.1.2.254"
    assert (cfg.data_dir, cfg.resolv_conf) == ("/run/x", "/etc/r")


def test_order_runtime_ranges_then_legacy_then_ranges():
    cfg = load({"subnet": "10.2.0.0/24", "gateway": "10.2.0.9", "ranges": [[{"subnet": "10.3.0.0/24"}]]},
               runtimeConfig={"ipRanges": [[{"subnet": "10.1.0.0/24"}]]})
    assert [str(s.ranges[0].subnet) for s in cfg.range_sets] == ["10.1.0.0/24", "10.2.0.0/24", "10.3.0.0/24"]
    assert cfg.range_sets[1].ranges[0].gateway == ip("10.2.0.9")


def test_requested_ips_from_all_sources():
    cfg = load({"ranges": [[{"subnet": "10.1.0.0/24"}]]}, {"IP": "10.1.0.5,fd00::5", "IgnoreUnknown": "1"},
               args={"cni": {"ips": ["10.1.0.6/24", "10.1.0.5"]}}, runtimeConfig={"ips": ["10.1.0.7"]})
    assert cfg.requested_ips == [ip("10.1.0.5"), ip("fd00::5"), ip("10.1.0.6"), ip("10.1.0.7")]


BAD = [
    ({"ranges": [[{"subnet": "10.1.2.1/24"}]]}, "10.1.2.1/24 has host bits set"),
    ({"ranges": [[{"subnet": "10.1.2.0/31"}]]}, "10.1.2.0/31 too small"),
    ({"ranges": [[{"subnet": "10.1.2.0/32"}]]}, "10.1.2.0/32 too small"),
    ({"ranges": [[{"subnet": "fd00::/127"}]]}, "fd00::/127 too small"),
    ({"ranges": [[{"subnet": "bogus"}]]}, "'bogus'"),
    ({"ranges": [[{"subnet": "10.1.2.0"}]]}, "no prefix length"),
    ({"ranges": [[{}]]}, "range set 0 (ipam.ranges[0]) range 0: missing subnet"),
    ({"ranges": [[]]}, "range set 0 (ipam.ranges[0]): empty range set"),
    ({"ranges": []}, "no IP ranges specified"),
    ({}, "no IP ranges specified"),
    ({"ranges": "10.0.0.0/8"}, "'10.0.0.0/8'"),
    ({"ranges": [[{"subnet": "10.1.0.0/24"}], [{"subnet": "10.1.0.0/25"}]]}, "range set 0 (10.1.0.1-10.1.0.254) "
                                                                           "overlaps with range set 1"),
    ({"ranges": [[{"subnet": "10.1.0.0/24"}, {"subnet": "10.1.0.0/25"}]]}, "subnets 10.1.0.1-10.1.0.254 and"),
    ({"ranges": [[{"subnet": "10.1.0.0/24"}, {"subnet": "fd00::/64"}]]}, "mixed address families"),
    ({"ranges": [[{"subnet": "10.1.0.0/24", "rangeStart": "10.1.1.5"}]]}, "rangeStart 10.1.1.5 not in network"),
    ({"ranges": [[{"subnet": "10.1.0.0/24", "rangeEnd": "10.1.1.5"}]]}, "rangeEnd 10.1.1.5 not in network"),
    ({"ranges": [[{"subnet": "10.1.0.0/24", "rangeStart": "10.1.0.50", "rangeEnd": "10.1.0.40"}]]},
     "rangeStart 10.1.0.50 is after rangeEnd 10.1.0.40"),
    ({"ranges": [[{"subnet": "10.1.0.0/24", "rangeStart": "nope"}]]}, "'nope'"),
    ({"ranges": [[{"subnet": "10.1.0.0/24", "gateway": "fd00::1"}]]}, "gateway fd00::1"),
    ({"ranges": [[{"subnet": "10.1.0.0/24"}]], "dataDir": 5}, "dataDir: 5"),
    ({"ranges": [[{"subnet": "10.1.0.0/24"}]], "routes": [{"dst": "nope"}]}, "route"),
]


@pytest.mark.parametrize("ipam,needle", BAD, ids=[b[1][:40] for b in BAD])
def test_invalid_configs(ipam, needle):
    with pytest.raises(CNIError) as exc:
        load(ipam)
    assert exc.value.code == ErrorCode.INVALID_CONFIG
    assert needle in exc.value.msg


def test_missing_ipam_section():
    with pytest.raises(CNIError) as exc:
        config.load({"name": "n"}, {}, "1.0.0")
    assert exc.value.code == ErrorCode.INVALID_CONFIG and "ipam" in exc.value.msg


def test_bad_requested_ip_named():
    with pytest.raises(CNIError) as exc:
        load({"ranges": [[{"subnet": "10.1.0.0/24"}]]}, {"IP": "10.1.0.x"})
    assert exc.value.code == ErrorCode.INVALID_CONFIG and "'10.1.0.x'" in exc.value.msg


def test_old_versions_allow_one_set_per_family():
    ipam = {"ranges": [[{"subnet": "10.1.0.0/24"}], [{"subnet": "10.2.0.0/24"}]]}
    assert len(load(ipam, version="0.3.0").range_sets) == 2
    with pytest.raises(CNIError) as exc:
        load(ipam, version="0.2.0")
    assert "0.2.0 does not support more than 1 address per family" in exc.value.msg
    assert len(load({"ranges": [[{"subnet": "10.1.0.0/24"}], [{"subnet": "fd00::/64"}]]},
                    version="0.2.0").range_sets) == 2


def test_case_insensitive_keys_like_go():
    cfg = load({"Ranges": [[{"Subnet": "10.1.0.0/24", "RangeStart": "10.1.0.7"}]]})
    assert cfg.range_sets[0].ranges[0].start == ip("10.1.0.7")


def test_data_dir_only_for_del_even_with_broken_ranges():
    assert config.data_dir(conf({"dataDir": "/tmp/x", "ranges": "broken"})) == "/tmp/x"


def test_resolv_conf(tmp_path):
    path = tmp_path / "resolv.conf"
    path.write_text("# c\n; c\nnameserver 10.0.0.53\nnameserver fd00::53\ndomain example.com\n"
                    "search a.example b.example\noptions ndots:5 edns0\n")
    dns = config.parse_resolv_conf(str(path))
    assert dns.nameservers == ["10.0.0.53", "fd00::53"] and dns.domain == "example.com"
    assert dns.search == ["a.example", "b.example"] and dns.options == ["ndots:5", "edns0"]
    with pytest.raises(CNIError) as exc:
        config.parse_resolv_conf(str(tmp_path / "missing"))
    assert exc.value.code == ErrorCode.IO_FAILURE and "missing" in exc.value.msg
