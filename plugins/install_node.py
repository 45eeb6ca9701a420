"""The installer's node: its pod CIDR(s) read from the Kubernetes API, as every network add-on reads them.

kube-controller-manager's node IPAM controller gives each node its pod ranges in ``spec.podCIDR`` (and
``spec.podCIDRs``: one per IP family on a dual-stack cluster). The downward API cannot show them, so the
installer reads its Node (``GET /api/v1/nodes/$NODE_NAME``, the ClusterRole in the manifests allows exactly
that) and hands them to the config template as variables (:func:`cidr_variables`).

Waiting and failing, as an operator needs to see it:

- the API unreachable (a connection refused or cut, a timeout, a 5xx or 429): retry with back-off (0.5 s doubling
  up to 30 s), one log line per attempt; nothing is written meanwhile, so the previous config stays;
- a node without a pod CIDR yet (the controller has not got to it, or the cluster runs without
  ``--allocate-node-cidrs``): wait with the same back-off and say so; a config with an empty range is never written;
- 401: the token is read again (projected tokens rotate) and tried once more, then refused;
- 401, 403, 404: refused at once (retrying cannot help): the message names the ServiceAccount, the ClusterRole
  and the binding it needs, or the node name the installer looked for.
"""

from __future__ import annotations

import ipaddress
import time
from typing import Any, Callable, Mapping

from cni_common import kubeapi
from cni_common.log import get_logger
from plugins.install_config import ConfigRefused

log = get_logger("cni-suite install")

#: The RBAC objects of conf-examples/kubernetes/*.yaml, named in the messages of 401 and 403.
SERVICE_ACCOUNT = "kube-system/cni-suite"
CLUSTER_ROLE = "cni-suite"
FIRST_DELAY, MAX_DELAY = 0.5, 30.0


def cidr_variables(cidrs: list[str]) -> dict[str, str]:
    """The template variables of a node's pod CIDRs (docs/kubernetes.md, "The template"):

    ``POD_CIDR`` the first (``spec.podCIDR``); ``POD_CIDRS`` all of them, comma-separated, and a list element
    that uses it is repeated once per CIDR; ``POD_DEFAULT_ROUTES`` the default route of each family present
    (``0.0.0.0/0``, ``::/0``), repeated the same way."""
    routes = dict.fromkeys("::/0" if ":" in c else "0.0.0.0/0" for c in cidrs)  # (checked by the IPAM's parser)
    return {"POD_CIDR": cidrs[0], "POD_CIDRS": ",".join(cidrs), "POD_DEFAULT_ROUTES": ",".join(routes)}


def pod_cidrs(node: Mapping[str, Any]) -> list[str]:
    """``spec.podCIDRs`` (or the older single ``spec.podCIDR``) of a Node object; [] when none is assigned yet.
    A value that is not a network refuses the config (it would become a range nobody can use)."""
    spec = node.get("spec")
    spec = spec if isinstance(spec, dict) else {}
    cidrs = spec.get("podCIDRs") or ([spec["podCIDR"]] if spec.get("podCIDR") else [])
    for cidr in cidrs:
        try:
            ipaddress.ip_network(cidr, strict=True)
        except (TypeError, ValueError) as exc:
            raise ConfigRefused(f"the node's spec.podCIDRs holds {cidr!r}, which is not a network: {exc}") from exc
    return [str(c) for c in cidrs]


def node_variables(env: Mapping[str, str], account_dir: str = "",
                   sleep: Callable[[float], None] = time.sleep) -> dict[str, str]:
    """The template variables of ``NODE_NAME``'s pod CIDRs, read from the API; waits until the node has one.

    :class:`ConfigRefused` when waiting cannot help (no in-cluster configuration, 401, 403, 404)."""
    name = env.get("NODE_NAME", "")
    if not name:
        raise ConfigRefused("--pod-cidr-from-api needs the environment variable NODE_NAME (the downward API's "
                            "spec.nodeName)")
    try:
        cluster = kubeapi.in_cluster(env, account_dir or kubeapi.SERVICE_ACCOUNT_DIR)
    except kubeapi.NotInCluster as exc:
        raise ConfigRefused(f"--pod-cidr-from-api: {exc}") from exc
    delay, unauthorized = FIRST_DELAY, 0
    while True:
        try:
            cidrs = pod_cidrs(kubeapi.get_node(cluster, name))
            if cidrs:
                log.info("node %s: pod CIDRs %s (from the API)", name, ", ".join(cidrs))
                return cidr_variables(cidrs)
            log.info("node %s has no spec.podCIDR yet (kube-controller-manager assigns one with "
                     "--allocate-node-cidrs; without it use --node-subnets): waiting %gs", name, delay)
        except kubeapi.APIError as exc:
            unauthorized = unauthorized + 1 if exc.code == 401 else 0
            if exc.code == 401 and unauthorized == 1:
                log.warning("the API refused the token (401): reading it again")
                continue
            if exc.code in (401, 403, 404):
                raise ConfigRefused(_refusal(exc, name, cluster)) from exc
            log.warning("the API answered %s: retrying in %gs (the previous config stays)", exc, delay)
        except kubeapi.Unreachable as exc:
            log.warning("the API is unreachable: %s: retrying in %gs (the previous config stays)", exc, delay)
        sleep(delay)
        delay = min(delay * 2, MAX_DELAY)


def _refusal(exc: kubeapi.APIError, name: str, cluster: kubeapi.InCluster) -> str:
    account = kubeapi.service_account_name(cluster.token_file)
    if exc.code == 401:
        return (f"the API refused the service account token{f' of {account}' if account else ''} twice ({exc}): "
                f"the token is not valid for {cluster.address} (expired, or its ServiceAccount deleted)")
    if exc.code == 403:
        return (f"the API forbids reading node {name} ({exc}): the ServiceAccount {SERVICE_ACCOUNT} needs the "
                f"ClusterRole {CLUSTER_ROLE} (get on nodes) through a ClusterRoleBinding, and the DaemonSet must "
                f"run as it (serviceAccountName: cni-suite{f'; this pod runs as {account}' if account else ''})")
    return (f"the API has no node {name!r} ({exc}): NODE_NAME must come from the downward API "
            f"(fieldRef spec.nodeName)")
