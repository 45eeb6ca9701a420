"""cni_common/dhcp/routes.py: the routes of options 121 (RFC 3442) and 33 (RFC 2132) from their bytes."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from cni_common.dhcp.routes import SCOPE_LINK, classless_routes, lease_routes, static_routes


def test_rfc3442_encodings():
    # 0/0 via 10.0.0.1; 10.17.0.0/16 via 10.0.0.2; 192.168.4.0/22 on the link (router 0.0.0.0); a /32
    data = [0, 10, 0, 0, 1,
            16, 10, 17, 10, 0, 0, 2,
            22, 192, 168, 4, 0, 0, 0, 0,
            32, 10, 9, 8, 7, 10, 0, 0, 3]
    assert classless_routes(data) == [
        {"dst": "0.0.0.0/0", "gw": "10.0.0.1"},
        {"dst": "10.17.0.0/16", "gw": "10.0.0.2"},
        {"dst": "192.168.4.0/22", "gw": "0.0.0.0", "scope": SCOPE_LINK},
        {"dst": "10.9.8.7/32", "gw": "10.0.0.3"},
    ]


def test_a_malformed_classless_option_gives_no_routes():
    assert classless_routes([33, 10, 0, 0, 0, 0, 10, 0, 0, 1]) == []  # a prefix over 32
    assert classless_routes([0, 10, 0, 0, 1, 24, 10, 1, 2, 10, 0]) == []  # the second route cut short
    assert classless_routes(None) == [] and classless_routes([]) == []


def test_static_routes_take_their_class_prefix():
    data = [10, 0, 0, 0, 10, 0, 0, 1,  172, 20, 0, 0, 10, 0, 0, 1,  192, 168, 7, 0, 10, 0, 0, 1,
            224, 0, 0, 0, 10, 0, 0, 1,  1, 2, 3]  # class D left out, a trailing piece too
    assert static_routes(data) == [{"dst": "10.0.0.0/8", "gw": "10.0.0.1"}, {"dst": "172.20.0.0/16", "gw": "10.0.0.1"},
                                   {"dst": "192.168.7.0/24", "gw": "10.0.0.1"}]


def test_classless_wins_then_static_and_the_default_route():
    options = {"classless_static_route": [8, 10, 10, 0, 0, 1], "static_route": [172, 20, 0, 0, 10, 0, 0, 1]}
    assert lease_routes(options, "10.0.0.1") == [{"dst": "10.0.0.0/8", "gw": "10.0.0.1"}]
    del options["classless_static_route"]
    assert lease_routes(options, "10.0.0.1") == [
        {"dst": "172.20.0.0/16", "gw": "10.0.0.1"}, {"dst": "0.0.0.0/0", "gw": "10.0.0.1"}]
    assert lease_routes({}, None) == []


@given(st.lists(st.integers(0, 255), max_size=64))
def test_any_option_bytes_give_routes_or_none_never_an_error(data):
    for route in classless_routes(data) + static_routes(data):
        assert set(route) <= {"dst", "gw", "scope"}
    assert lease_routes({"classless_static_route": data, "static_route": data, "router": "x"}, None) is not None
