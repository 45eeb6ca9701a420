"""Property-based testing of bad input: the generators, the invariants and the run budgets (hypothesis).

Profiles (``CNI_SUITE_PROPERTIES=<name>``):

- ``ci`` (default): a fixed seed (``derandomize``: the same examples on every run, so a red CI is reproducible)
  and a bounded number of examples per test, well within the suite's time budget;
- ``long``: random seeds and 50x the examples, for a search run by hand (docs/threat-model.md, bench/README.md).

Generated configs start from a valid config of the plugin and apply one to three mutations to documented keys
(a value of any JSON type, an out-of-range number, an odd string, the key removed) plus unknown extra keys.
Paths the plugins would write to (``dataDir``, ``logFile``) only get non-string values or paths inside the
test's temp dir: the plugins run as root.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

CI_EXAMPLES = {"inprocess": 150, "stdin": 150, "env": 100, "built": 12}
LONG_FACTOR = 50


def register_profiles() -> None:
    common = dict(deadline=None, database=None, print_blob=True,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                         HealthCheck.data_too_large, HealthCheck.filter_too_much])
    settings.register_profile("ci", derandomize=True, **common)
    settings.register_profile("long", derandomize=False, **common)
    settings.load_profile(profile())


def profile() -> str:
    return os.environ.get("CNI_SUITE_PROPERTIES", "ci")


def examples(kind: str) -> int:
    return CI_EXAMPLES[kind] * (LONG_FACTOR if profile() == "long" else 1)


# ---------------------------------------------------------------------------------------------- generators

ODD_STRINGS = st.sampled_from(["", " ", "\n", "net\n", "\tx", "../../etc", "/", ".", "..", "a" * 300, "a" * 70000,
                               "\u00e9\u4e2d", "\x00", "x\r\nETH0", "-", "0", "1e999", "true", "null", "{}", "[]",
                               "10.0.0.1", "10.0.0.0/33", "::/129", "ff:ff:ff:ff:ff:ff:ff"])
NUMBERS = st.one_of(st.integers(), st.sampled_from([-1, 0, 1, 2 ** 31, 2 ** 32 + 1, 2 ** 63, -(2 ** 63) - 1,
                                                    10 ** 30, 65536, 4095, 4096]),
                    st.floats(allow_nan=False, allow_infinity=False))
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, ODD_STRINGS, st.text(max_size=40))
JSON_VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                            st.dictionaries(st.text(max_size=12), inner, max_size=4)),
                           max_leaves=12)

#: Documented keys of each plugin's config ("a.b" reaches into objects), from docs/<plugin>.md.
KEYS = {
    "bridge": ["type", "bridge", "isGateway", "isDefaultGateway", "forceAddress", "ipMasq", "ipMasqBackend", "mtu",
               "hairpinMode", "promiscMode", "vlan", "vlanTrunk", "preserveDefaultVlan", "enabledad", "macspoofchk",
               "disableContainerInterface", "portIsolation", "ipam", "ipam.type", "dns", "dns.nameservers",
               "dns.domain", "args", "args.cni", "args.cni.mac", "runtimeConfig", "runtimeConfig.mac",
               "capabilities", "prevResult", "cniVersion", "name"],
    "host-local": ["ipam", "ipam.type", "ipam.ranges", "ipam.routes", "ipam.dataDir", "ipam.resolvConf",
                   "ipam.subnet", "ipam.rangeStart", "ipam.rangeEnd", "ipam.gateway", "ipam.reclaimAfterReboot",
                   "args", "args.cni", "args.cni.ips", "runtimeConfig", "runtimeConfig.ips",
                   "runtimeConfig.ipRanges", "cniVersion", "name", "cni.dev/valid-attachments"],
    "portmap": ["type", "snat", "masqAll", "markMasqBit", "externalSetMarkChain", "conditionsV4", "conditionsV6",
                "backend", "runtimeConfig", "runtimeConfig.portMappings", "prevResult", "capabilities", "cniVersion",
                "name", "cni.dev/valid-attachments"],
    "vxlan": ["type", "network", "subnetLen", "subnet", "vni", "port", "mtu", "nodeName", "underlayInterface",
              "underlayIP", "bridge", "ipMasq", "ipam", "peers", "etcd", "cniVersion", "name"],
    "loopback": ["type", "dns", "dns.domain", "capabilities", "prevResult", "runtimeConfig", "args", "cniVersion",
                 "name"],
    "ptp": ["type", "ipMasq", "ipMasqBackend", "mtu", "ipam", "ipam.type", "dns", "dns.nameservers", "prevResult",
            "runtimeConfig", "capabilities", "cniVersion", "name", "cni.dev/valid-attachments"],
    "static": ["ipam", "ipam.type", "ipam.addresses", "ipam.routes", "ipam.dns", "ipam.dns.nameservers", "args",
               "args.cni", "args.cni.ips", "runtimeConfig", "runtimeConfig.ips", "prevResult", "cniVersion", "name"],
    "macvlan": ["type", "master", "mode", "mtu", "mac", "linkInContainer", "bcqueuelen", "ipam", "ipam.type", "dns",
                "args", "args.cni", "args.cni.mac", "runtimeConfig", "runtimeConfig.mac", "prevResult",
                "cniVersion", "name"],
    "ipvlan": ["type", "master", "mode", "mtu", "linkInContainer", "ipam", "ipam.type", "dns", "prevResult",
               "prevResult.interfaces", "prevResult.ips", "cniVersion", "name"],
    "vlan": ["type", "master", "vlanId", "mtu", "linkInContainer", "ipam", "ipam.type", "dns", "prevResult",
             "cniVersion", "name"],
    "dummy": ["type", "ipam", "ipam.type", "dns", "prevResult", "cniVersion", "name"],
    "tap": ["type", "multiQueue", "mtu", "mac", "owner", "group", "selinuxContext", "bridge", "ipam", "ipam.type",
            "dns", "args", "args.cni.mac", "runtimeConfig", "runtimeConfig.mac", "prevResult", "cniVersion", "name"],
    "host-device": ["type", "device", "hwaddr", "kernelpath", "pciBusID", "runtimeConfig", "runtimeConfig.deviceID",
                    "dataDir", "ipam", "ipam.type", "dns", "prevResult", "cniVersion", "name"],
    "sbr": ["type", "table", "prevResult", "prevResult.ips", "prevResult.interfaces", "cniVersion", "name"],
    "vrf": ["type", "vrfname", "table", "prevResult", "prevResult.ips", "prevResult.interfaces", "cniVersion",
            "name"],
}
PATH_KEYS = {"dataDir", "logFile"}


def base(plugin: str, data_dir: str) -> dict[str, Any]:
    """A valid config (1.1.0: every verb is allowed) for ``plugin``."""
    ipam = {"type": "host-local", "dataDir": data_dir, "ranges": [[{"subnet": "10.99.0.0/24"}]]}
    prev = {"cniVersion": "1.1.0", "interfaces": [{"name": "eth0", "sandbox": "/nonexistent/cnt-netns"}],
            "ips": [{"address": "10.99.0.5/24", "interface": 0}]}
    common = {"cniVersion": "1.1.0", "name": "cntp"}
    if plugin == "bridge":
        return dict(common, type="bridge", bridge="cntpbr0", isGateway=True, ipMasq=True, ipam=ipam, prevResult=prev)
    if plugin == "host-local":
        return dict(common, type="bridge", ipam=ipam)
    if plugin == "portmap":
        return dict(common, type="portmap", capabilities={"portMappings": True}, prevResult=prev,
                    runtimeConfig={"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]})
    if plugin == "vxlan":
        return dict(common, type="vxlan", network="10.98.0.0/16", peers=[], ipam={"type": "host-local",
                                                                                 "dataDir": data_dir})
    static_ipam = {"type": "static", "addresses": [{"address": "10.99.0.5/24", "gateway": "10.99.0.1"}],
                   "routes": [{"dst": "0.0.0.0/0"}], "dns": {"nameservers": ["10.99.0.53"]}}
    if plugin == "loopback":
        return dict(common, type="loopback")
    if plugin in ("ptp", "static"):
        return dict(common, type="ptp", ipMasq=True, ipam=static_ipam, prevResult=prev)
    link_keys = {"macvlan": {"master": "cntpm0", "mode": "bridge"}, "ipvlan": {"master": "cntpm0", "mode": "l2"},
                 "vlan": {"master": "cntpm0", "vlanId": 5}, "dummy": {}, "tap": {"multiQueue": True}}
    if plugin in link_keys:
        return dict(common, type=plugin, **link_keys[plugin], ipam=ipam, prevResult=prev)
    if plugin == "host-device":
        return dict(common, type=plugin, device="cntpm0", dataDir=data_dir, ipam=ipam, prevResult=prev)
    if plugin in ("sbr", "vrf"):
        return dict(common, type=plugin, prevResult=prev, **({"vrfname": "cntpv"} if plugin == "vrf" else {}))
    raise ValueError(plugin)


@st.composite
def mutated_config(draw: st.DrawFn, plugin: str, data_dir: str) -> tuple[dict[str, Any], list[str]]:
    """A config of ``plugin`` with 1-3 keys changed; returns it and the changed key paths."""
    conf = base(plugin, data_dir)
    changed: list[str] = []
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(KEYS[plugin]))
        op = draw(st.sampled_from(["value", "value", "odd", "number", "delete"]))
        if op == "delete":
            _delete(conf, path)
        else:
            value = draw({"value": JSON_VALUES, "odd": ODD_STRINGS, "number": NUMBERS}[op])
            if path.rsplit(".", 1)[-1] in PATH_KEYS and isinstance(value, str):
                value = os.path.join(data_dir, "p" + value.encode().hex()[:40])
            _set(conf, path, value)
        changed.append(path)
    extra_keys = st.text(max_size=8).map(lambda k: "x-" + k)  # never a key the plugins read
    for key, value in draw(st.dictionaries(extra_keys, JSON_VALUES, max_size=2)).items():
        conf[key] = value
    return conf, changed


def _set(conf: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".") if path != "cni.dev/valid-attachments" else [path]
    node: Any = conf
    for part in parents:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[last] = value


def _delete(conf: dict[str, Any], path: str) -> None:
    *parents, last = path.split(".") if path != "cni.dev/valid-attachments" else [path]
    node: Any = conf
    for part in parents:
        node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, dict):
        node.pop(last, None)


@st.composite
def hostile_stdin(draw: st.DrawFn, valid: bytes) -> bytes:
    """Bytes near a valid config: cut, flipped, re-encoded, wrapped, nested, or just random."""
    kind = draw(st.sampled_from(["truncate", "flip", "utf16", "utf32", "bom", "nest", "random", "trailing", "dup"]))
    if kind == "truncate":
        return valid[:draw(st.integers(0, len(valid)))]
    if kind == "flip":
        pos = draw(st.integers(0, len(valid) - 1))
        return valid[:pos] + bytes([draw(st.integers(0, 255))]) + valid[pos + 1:]
    if kind in ("utf16", "utf32"):
        return valid.decode().encode("utf-16" if kind == "utf16" else "utf-32")
    if kind == "bom":
        return b"\xef\xbb\xbf" + valid
    if kind == "nest":
        depth = draw(st.integers(400, 30000))
        return valid[:-1] + b',"x":' + b"[" * depth + b"]" * depth + b"}"
    if kind == "trailing":
        return valid + draw(st.sampled_from([b"{}", b" x", b"\x00", b"]"]))
    if kind == "dup":
        return valid[:-1] + b',"name":' + json.dumps(draw(SCALARS)).encode() + b"}"
    return draw(st.binary(max_size=300))


# ---------------------------------------------------------------------------------------------- invariants

def one_json_object(stdout: str) -> dict[str, Any]:
    """stdout holds exactly one JSON object (and white space)."""
    decoder = json.JSONDecoder()
    obj, end = decoder.raw_decode(stdout.lstrip())
    assert isinstance(obj, dict), stdout
    assert not stdout.lstrip()[end:].strip(), f"more than one JSON document on stdout: {stdout!r}"
    return obj


def check_refusal(rc: int, stdout: str, stderr: str, changed: list[str] = ()) -> dict[str, Any] | None:
    """The invariants of any call: success, or exit 1 with one JSON error, a spec code that is not 999, a
    message, no traceback; a config error (6/7) names one of the changed keys. Returns the error (None: rc 0)."""
    assert "Traceback (most recent call last)" not in stderr, stderr
    if rc == 0:
        if stdout.strip():
            one_json_object(stdout)
        return None
    assert rc == 1, (rc, stdout, stderr)
    err = one_json_object(stdout)
    assert isinstance(err.get("code"), int) and isinstance(err.get("msg"), str) and err["msg"], err
    assert err["code"] != 999, f"code 999 (our bug) for bad input: {err}"
    if err["code"] in (6, 7) and changed:
        text = (err["msg"] + " " + str(err.get("details", ""))).lower()
        words = {w.lower().rstrip("s") for path in changed for w in path.replace("/", ".").split(".")}
        assert any(w and w in text for w in words), f"message names none of {changed}: {err}"
    return err


def reservations(data_dir: str) -> dict[str, bytes]:
    """The data dir's reservations and round-robin markers (what a refused call must not change)."""
    out = {}
    for path in Path(data_dir).rglob("*"):
        name = path.name
        if path.is_file() and not path.is_symlink() and (name[0].isdigit() or ":" in name
                                                          or name.startswith("last_reserved_ip.")):
            out[str(path)] = path.read_bytes()
    return out


