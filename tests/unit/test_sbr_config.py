"""sbr's refusals of a chained request, in-process, stopped at the kernel: the message names the key."""

from __future__ import annotations

import pytest

from tests.helpers import inprocess

pytestmark = pytest.mark.usefixtures("no_kernel")

CONF = {"cniVersion": "1.1.0", "name": "cnts", "type": "sbr"}


@pytest.mark.parametrize("prev", [
    {"": None},  # found by the property test: a prevResult with no addresses at all
    {"interfaces": [{"name": "eth0"}], "ips": []},
    {"interfaces": [{"name": "eth1"}], "ips": [{"address": "10.1.0.5/24", "interface": 0}]},
], ids=["no-ips-key", "empty-ips", "ips-on-another-interface"])
@pytest.mark.parametrize("verb", ["ADD", "CHECK"])
def test_no_address_on_the_interface_is_code_7_naming_prevresult(prev, verb):
    result = inprocess.call("sbr", verb, dict(CONF, prevResult=dict(prev, cniVersion="1.1.0")))
    assert result.rc == 1 and not result.reached_kernel, result.out
    assert result.out["code"] == 7 and "prevResult" in result.out["msg"], result.out
    assert "No IP addresses supplied on interface: eth0" in result.out["msg"]  # upstream's words kept
