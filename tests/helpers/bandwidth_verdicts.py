"""Bad bandwidth configs and who refuses them: one table for our in-process unit test and for the side-by-side
run against the Go bandwidth v1.1.1 (tests/netns/test_bandwidth_go_verdicts.py).

Go validates in every verb (ADD, DEL, CHECK), so a bad config makes its DEL fail too; ours does the same.
Deliberate differences are marked ``go_refuses=False`` and listed in docs/bandwidth.md.
"""

from __future__ import annotations

from typing import Any, NamedTuple

VERBS = ("ADD", "DEL", "CHECK")


class Case(NamedTuple):
    label: str
    patch: dict[str, Any]   # merged into the base config (top level)
    key: str                # what our message (or details) must name
    go_msg: str = ""        # a part of Go's message, when Go refuses it
    go_refuses: bool = True


def base() -> dict[str, Any]:
    return {"cniVersion": "1.0.0", "name": "cntbwv", "type": "bandwidth", "capabilities": {"bandwidth": True}}


CASES = [
    Case("ingress-rate-alone", {"ingressRate": 8000}, "ingressRate", "if rate is set, burst must also be set"),
    Case("ingress-burst-alone", {"ingressBurst": 8000}, "ingressBurst", "if burst is set, rate must also be set"),
    Case("egress-rate-alone", {"egressRate": 8000, "egressBurst": 0}, "egressRate", "burst must also be set"),
    Case("egress-burst-alone", {"egressBurst": 8000}, "egressBurst", "if burst is set, rate must also be set"),
    Case("burst-over-4GB", {"egressRate": 8000, "egressBurst": 8 * 0xFFFFFFFF}, "egressBurst",
         "burst cannot be more than 4GB"),
    Case("rate-negative", {"ingressRate": -1, "ingressBurst": 8000}, "ingressRate", "cannot unmarshal number -1"),
    Case("rate-float", {"ingressRate": 1.5, "ingressBurst": 8000}, "ingressRate", "cannot unmarshal number 1.5"),
    Case("rate-string", {"ingressRate": "8000", "ingressBurst": 8000}, "ingressRate", "cannot unmarshal string"),
    Case("rate-bool", {"ingressRate": True, "ingressBurst": 8000}, "ingressRate", "cannot unmarshal bool"),
    Case("rate-over-uint64", {"ingressRate": 2 ** 64, "ingressBurst": 8000}, "ingressRate",
         "cannot unmarshal number 18446744073709551616"),
    Case("burst-object", {"egressRate": 8000, "egressBurst": {}}, "egressBurst", "cannot unmarshal object"),
    Case("runtimeConfig-bandwidth-number", {"runtimeConfig": {"bandwidth": 5}}, "runtimeConfig.bandwidth",
         "cannot unmarshal number"),
    Case("runtimeConfig-bandwidth-list", {"runtimeConfig": {"bandwidth": []}}, "runtimeConfig.bandwidth",
         "cannot unmarshal array"),
    Case("runtimeConfig-rate-alone", {"runtimeConfig": {"bandwidth": {"egressRate": 8000}}},
         "runtimeConfig.bandwidth.egressRate", "if rate is set, burst must also be set"),
    Case("runtimeConfig-rate-string", {"runtimeConfig": {"bandwidth": {"ingressRate": "1M", "ingressBurst": 8}}},
         "runtimeConfig.bandwidth.ingressRate", "cannot unmarshal string"),
    Case("runtimeConfig-list", {"runtimeConfig": []}, "runtimeConfig", "cannot unmarshal array"),
    # Ours only: under 8 bit/s the rate is 0 bytes/s, and Go hands the kernel a bucket with a 0 rate.
    Case("rate-under-8-bits", {"ingressRate": 4, "ingressBurst": 8000}, "ingressRate", go_refuses=False),
]
