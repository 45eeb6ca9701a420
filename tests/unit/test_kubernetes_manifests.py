"""conf-examples/kubernetes/*.yaml apply as written: every installer command parses with the installer's own
argument parser, every path it names is a volume of the right kind, the ConfigMap's template renders and passes
the plugins' config parsers, and each container has only the privileges its comment claims."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from plugins.install import build_parser
from plugins.install_config import node_subnet, render, validate
from plugins.install_node import CLUSTER_ROLE, SERVICE_ACCOUNT, cidr_variables

MANIFESTS = sorted((Path(__file__).resolve().parents[2] / "conf-examples" / "kubernetes").glob("*.yaml"))


def documents(path: Path) -> dict[str, dict]:
    return {doc["kind"]: doc for doc in yaml.safe_load_all(path.read_text()) if doc}


def mounts(container: dict, volumes: dict[str, dict]) -> dict[str, dict]:
    """mountPath -> the volume mounted there (with `readOnly` of the mount)."""
    return {m["mountPath"]: {**volumes[m["name"]], "readOnly": m.get("readOnly", False)}
            for m in container.get("volumeMounts", [])}


def containers(spec: dict) -> list[dict]:
    return spec.get("initContainers", []) + spec["containers"]


INSTALLS = [p for p in MANIFESTS if p.name != "uninstall.yaml"]
#: The node's launcher cache (launcher.c: DEFAULT_CACHE), where the installers write warm-mode. The installer
#: makes a 0755 folder 0700 itself: DirectoryOrCreate is enough.
LAUNCHER_CACHE = {"path": "/var/cache/cni-suite", "type": "DirectoryOrCreate"}


def test_the_manifests():
    assert [p.name for p in MANIFESTS] == ["bridge.yaml", "uninstall.yaml", "vxlan.yaml"]


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_daemonset_runs_everywhere_and_rolls(path: Path):
    ds = documents(path)["DaemonSet"]
    assert ds["spec"]["updateStrategy"]["type"] == "RollingUpdate"
    spec = ds["spec"]["template"]["spec"]
    assert spec["hostNetwork"] is True  # the pod network cannot be a prerequisite of its own installer
    assert {"operator": "Exists"} in spec["tolerations"]
    assert spec["priorityClassName"] == "system-node-critical"
    assert ds["spec"]["selector"]["matchLabels"].items() <= ds["spec"]["template"]["metadata"]["labels"].items()


@pytest.mark.parametrize("path", INSTALLS, ids=lambda p: p.name)
def test_installer_commands_parse_and_match_the_volumes(path: Path):
    docs = documents(path)
    spec = docs["DaemonSet"]["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    installers = [c for c in containers(spec) if c["command"][:2] == ["/cni-suite", "install"]]
    assert installers and any("--watch" in c["command"] for c in installers)
    for c in installers:
        opts = build_parser().parse_args(c["command"][2:])  # argparse exits (fails the test) on a bad flag
        at = mounts(c, volumes)
        assert at[opts.bin_dir]["hostPath"]["path"] == "/opt/cni/bin" and not at[opts.bin_dir]["readOnly"]
        assert at[opts.conf_dir]["hostPath"]["path"] == "/etc/cni/net.d" and not at[opts.conf_dir]["readOnly"]
        config_dir, key = opts.conflist.rsplit("/", 1)
        configmap = docs["ConfigMap"]
        assert at[config_dir]["configMap"]["name"] == configmap["metadata"]["name"] and at[config_dir]["readOnly"]
        assert key in configmap["data"]
        if opts.node_subnets:
            assert opts.node_subnets.rsplit("/", 1) == [config_dir, "node-subnets"]
        assert "emptyDir" in at["/var/cache"]  # where the single file unpacks (read-only root file system)
        assert opts.warm == "auto"  # the build's default, written out so that the operator sees the switch
        assert at[opts.cache_dir]["hostPath"] == LAUNCHER_CACHE and not at[opts.cache_dir]["readOnly"]
        env = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in c.get("env", [])}
        assert env.get("NODE_NAME") == "spec.nodeName"
        security = c["securityContext"]
        assert security["capabilities"] == {"drop": ["ALL"]}  # root owns the host dirs: nothing else needed
        assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
        assert security.get("privileged") is False


@pytest.mark.parametrize("cidrs", [["10.244.1.0/24"], ["10.244.1.0/24", "fd00:10:244:1::/64"], ["fd00:1::/64"]],
                         ids=["ipv4", "dual-stack", "ipv6"])
@pytest.mark.parametrize("path", INSTALLS, ids=lambda p: p.name)
def test_configmap_template_renders_and_validates(path: Path, cidrs: list[str]):
    data = documents(path)["ConfigMap"]["data"]
    env = {"NODE_NAME": "node-1", **cidr_variables(cidrs)}  # what --pod-cidr-from-api reads from the node
    conflist = render(yaml.safe_load(data["conflist.json"]), env)  # JSON is YAML
    needed = validate(conflist)
    assert set(needed) <= {"bridge", "host-local", "portmap", "vxlan"}  # all installed by the DaemonSet
    if "bridge" in needed:  # one range set per pod CIDR, and a default route per family
        ipam = conflist["plugins"][0]["ipam"]
        assert ipam["ranges"] == [[{"subnet": cidr}] for cidr in cidrs]
        assert len(ipam["routes"]) == len({":" in cidr for cidr in cidrs})


def test_the_node_subnets_fallback_is_documented_in_the_configmap():
    path = next(p for p in MANIFESTS if p.name == "bridge.yaml")
    data, text = documents(path)["ConfigMap"], path.read_text()
    assert "node-subnets" not in data["data"] and "--node-subnets=/etc/cni-suite/node-subnets" in text
    lines = "\n".join(line.split("#", 1)[1][3:] for line in text.splitlines() if line.startswith("  #   node-"))
    assert node_subnet(lines, "node-1") == "10.244.1.0/24"  # the commented example parses once uncommented


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_only_the_installer_reading_the_api_has_a_token_and_it_may_only_get_nodes(path: Path):
    docs = documents(path)
    spec = docs["DaemonSet"]["spec"]["template"]["spec"]
    reads_api = [c for c in containers(spec) if "--pod-cidr-from-api" in c.get("command", [])]
    if not reads_api:  # least privilege: no API access at all
        assert spec["automountServiceAccountToken"] is False and "ServiceAccount" not in docs
        return
    account, role, binding = docs["ServiceAccount"], docs["ClusterRole"], docs["ClusterRoleBinding"]
    assert f"{account['metadata']['namespace']}/{account['metadata']['name']}" == SERVICE_ACCOUNT
    assert spec["serviceAccountName"] == account["metadata"]["name"]
    assert account["metadata"]["namespace"] == docs["DaemonSet"]["metadata"]["namespace"]
    assert spec.get("automountServiceAccountToken", True) is True
    assert role["metadata"]["name"] == CLUSTER_ROLE  # the name the 403 message tells the operator to bind
    assert role["rules"] == [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]}]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": CLUSTER_ROLE}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account["metadata"]["name"],
                                    "namespace": account["metadata"]["namespace"]}]
    for c in reads_api:
        env = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in c.get("env", [])}
        assert env["NODE_NAME"] == "spec.nodeName"


def test_vxlan_agent_reads_the_installed_config_with_net_admin_only():
    spec = documents(next(p for p in MANIFESTS if p.name == "vxlan.yaml"))["DaemonSet"]["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    installer = next(c for c in spec["containers"] if c["command"][:2] == ["/cni-suite", "install"])
    opts = build_parser().parse_args(installer["command"][2:])
    agent = next(c for c in spec["containers"] if c["name"] == "agent")
    assert agent["command"][:4] == ["/cni-suite", "vxlan", "agent", "--conf"]
    assert agent["command"][4] == f"{opts.conf_dir}/{opts.conflist_name}"
    # Its probes hit the health endpoint it listens on (docs/vxlan.md, "Agent").
    assert agent["command"][5:] == ["--listen", "$(NODE_IP):9651"]
    assert agent["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": 9651}
    assert agent["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": 9651}
    at = mounts(agent, volumes)
    assert at[opts.conf_dir]["hostPath"]["path"] == "/etc/cni/net.d" and at[opts.conf_dir]["readOnly"]
    assert agent["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": ["NET_ADMIN"]}
    assert agent["securityContext"].get("privileged") is False
    # The plugin (on the host) and the agent (in the pod) read the etcd certificates from the same paths.
    assert at["/etc/cni/vxlan"]["hostPath"]["path"] == "/etc/cni/vxlan"
    # The agent starts after one install has written the config it reads.
    assert spec["initContainers"][0]["command"][:2] == ["/cni-suite", "install"]
    assert "--watch" not in spec["initContainers"][0]["command"]


def test_uninstall_removes_what_the_installers_wrote_and_stays_up():
    spec = documents(next(p for p in MANIFESTS if p.name == "uninstall.yaml"))["DaemonSet"]["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    (c,) = spec["containers"]
    opts = build_parser().parse_args(c["command"][2:])
    assert opts.uninstall and opts.remove_binaries and opts.watch  # a DaemonSet's container must not exit
    for path in INSTALLS:
        ds = documents(path)["DaemonSet"]["spec"]["template"]["spec"]
        installer = next(i for i in ds["containers"] if i["command"][:2] == ["/cni-suite", "install"])
        theirs = build_parser().parse_args(installer["command"][2:])
        assert (theirs.bin_dir, theirs.conf_dir, theirs.conflist_name) == (
            opts.bin_dir, opts.conf_dir, opts.conflist_name)
    at = mounts(c, volumes)
    assert at[opts.bin_dir]["hostPath"]["path"] == "/opt/cni/bin"
    assert at[opts.conf_dir]["hostPath"]["path"] == "/etc/cni/net.d"
    assert opts.cache_dir and at[opts.cache_dir]["hostPath"] == LAUNCHER_CACHE  # removes the installers' warm-mode
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}


@pytest.mark.parametrize("path", INSTALLS, ids=lambda p: p.name)
def test_the_warm_switch_is_one_flag_with_its_off_switch_explained(path: Path):
    """Every installer of a manifest writes the same switch (the init container's comes first, the watching one
    keeps it), and the comment beside it says how to turn it off."""
    spec = documents(path)["DaemonSet"]["spec"]["template"]["spec"]
    installers = [c for c in containers(spec) if c["command"][:2] == ["/cni-suite", "install"]]
    assert {(o.warm, o.cache_dir) for o in (build_parser().parse_args(c["command"][2:]) for c in installers)} == {
        ("auto", "/host/var/cache/cni-suite")}
    assert "--warm=off" in path.read_text() and "CNI_SUITE_WARM=off" in path.read_text()
