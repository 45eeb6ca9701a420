"""The installer's network config: a template (a ConfigMap) filled in from the environment, then validated.

Substitution is deliberately small: ``${NAME}`` inside a JSON **string value** is replaced by the environment
variable ``NAME`` (names: letters, digits, ``_``). It happens after the template is parsed, so a value can never
break the JSON around it, and a template is valid JSON before and after. A variable that is not set is an error
naming the key that uses it: a config with an empty subnet must never reach a node. ``$`` alone is kept as is.
A list element using a list variable (``${POD_CIDRS}``) is repeated once per value: one range set per pod CIDR.

Validation runs the suite's own config parsers on every plugin of the list whose ``type`` is ours (bridge's
``load_conf``, host-local's range config, portmap's and bandwidth's ``parse_conf``, vxlan's ``config.parse``):
the same code a plugin runs on ADD, without touching the kernel. A bad config is refused with that parser's
message, prefixed with where it is (``plugins[0] (bridge): invalid VLAN ID 5000``), and nothing is written.
"""

from __future__ import annotations

import json
import re
from typing import Any, Callable, Mapping

from cni_common.errors import CNIError

VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
#: Variables holding a comma-separated list: the element of the outermost list inside a plugin that uses one
#: is repeated once per value (``ranges``: one range set per pod CIDR; ``routes``: one route per value), while
#: the ``plugins`` list itself is never repeated. plugins/install_node.py sets them.
LIST_VARIABLES = ("POD_CIDRS", "POD_DEFAULT_ROUTES")


class ConfigRefused(Exception):
    """The template or the rendered config is not one we will write; the message names the key."""


def node_subnet(subnets_text: str, node_name: str) -> str:
    """The subnet of ``node_name`` in a node-subnets file: one ``<node name> <CIDR>`` per line, ``#`` comments.

    How a bridge network gets a per-node subnet without an API call: the operator lists them in the ConfigMap.
    """
    for number, line in enumerate(subnets_text.splitlines(), 1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        if len(words) != 2:
            raise ConfigRefused(f"node subnets line {number}: expected '<node name> <CIDR>', got {line.strip()!r}")
        if words[0] == node_name:
            return words[1]
    raise ConfigRefused(f"node subnets: no line for node {node_name!r}")


def render(template: Any, env: Mapping[str, str], where: str = "") -> Any:
    """``template`` (parsed JSON) with every ``${NAME}`` in string values replaced from ``env``."""
    if isinstance(template, dict):
        return {k: render(v, env, f"{where}.{k}" if where else k) for k, v in template.items()}
    if isinstance(template, list):
        rendered = []
        for i, item in enumerate(template):
            lists = [] if where == "plugins" else sorted(set(_variables(item)) & set(LIST_VARIABLES))
            if len(lists) > 1:
                raise ConfigRefused(f"{where}[{i}]: uses both ${{{lists[0]}}} and ${{{lists[1]}}} (one list "
                                    "variable per list element)")
            values = env[lists[0]].split(",") if lists and lists[0] in env else [None]
            for one in values:  # one copy of the element per value of its list variable
                rendered.append(render(item, env if one is None else {**env, lists[0]: one}, f"{where}[{i}]"))
        return rendered
    if isinstance(template, str):
        def value(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in env:
                raise ConfigRefused(f"{where}: ${{{name}}} is used but the environment variable {name} is not set")
            return env[name]

        return VARIABLE.sub(value, template)
    return template


def _variables(template: Any) -> list[str]:
    """The names of the variables a template (or a part of it) uses."""
    if isinstance(template, dict):
        return [name for value in template.values() for name in _variables(value)]
    if isinstance(template, list):
        return [name for value in template for name in _variables(value)]
    return VARIABLE.findall(template) if isinstance(template, str) else []


def parse_template(text: str, source: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ConfigRefused(f"{source} is not valid JSON: {exc}") from exc


def validate(conflist: Any) -> list[str]:
    """Check a rendered conflist; returns the plugin types it names (each must be in the bin directory)."""
    from cni_common.version import SUPPORTED_VERSIONS

    if not isinstance(conflist, dict):
        raise ConfigRefused("the network config list must be a JSON object")
    version = conflist.get("cniVersion")
    if version not in SUPPORTED_VERSIONS:
        raise ConfigRefused(f"cniVersion: {version!r} is not one of {', '.join(SUPPORTED_VERSIONS)}")
    name = conflist.get("name")
    if not isinstance(name, str) or not name:
        raise ConfigRefused("name: a non-empty string is required")
    plugins = conflist.get("plugins")
    if not isinstance(plugins, list) or not plugins:
        raise ConfigRefused("plugins: a non-empty list is required (a single .conf is not supported)")
    types = []
    for index, plugin in enumerate(plugins):
        if not isinstance(plugin, dict) or not isinstance(plugin.get("type"), str) or not plugin["type"]:
            raise ConfigRefused(f"plugins[{index}].type: every plugin needs a type")
        single = {"name": name, "cniVersion": version, **plugin}
        check = VALIDATORS.get(plugin["type"])
        try:
            if check is not None:
                check(single)
        except CNIError as exc:
            detail = f" ({exc.details})" if exc.details else ""
            raise ConfigRefused(f"plugins[{index}] ({plugin['type']}): {exc.msg}{detail}") from exc
        types.append(plugin["type"])
        ipam = plugin.get("ipam")
        ipam = ipam if isinstance(ipam, dict) else {}
        ipam_type = ipam.get("type") or ("host-local" if plugin["type"] == "vxlan" else "")  # vxlan's default
        if isinstance(ipam_type, str) and ipam_type:
            types.append(ipam_type)
    return types


def _bridge(conf: dict[str, Any]) -> None:
    from plugins.bridge import load_conf

    load_conf(conf, {})
    ipam = conf.get("ipam")
    if isinstance(ipam, dict) and ipam.get("type") == "host-local":
        _host_local(conf)


def _host_local(conf: dict[str, Any]) -> None:
    """The IPAM section, as host-local reads it on ADD; with the ``ipRanges`` capability the runtime may
    supply the ranges, so a section without any is accepted then."""
    from cni_common.alloc.config import load

    try:
        load(conf, {}, conf["cniVersion"])
    except CNIError as exc:
        capabilities = conf.get("capabilities")
        runtime_ranges = isinstance(capabilities, dict) and capabilities.get("ipRanges") is True
        if not (runtime_ranges and exc.msg == "no IP ranges specified"):
            raise


def _as_add(conf: dict[str, Any]) -> Any:
    """The CmdArgs of an ADD of ``conf``, for the parsers of chained plugins (which read nothing else)."""
    from cni_common.skel import CmdArgs

    return CmdArgs(command="ADD", container_id="cni-suite-install", netns="", ifname="eth0", args="", path=[],
                   stdin_data=b"", conf=conf, cni_version=conf["cniVersion"])


def _portmap(conf: dict[str, Any]) -> None:
    from plugins.portmap import parse_conf

    parse_conf(_as_add(conf))


def _bandwidth(conf: dict[str, Any]) -> None:
    from plugins.bandwidth import parse_conf

    parse_conf(_as_add(conf))


def _vxlan(conf: dict[str, Any]) -> None:
    from cni_common.overlay.config import parse

    parse(conf)


VALIDATORS: dict[str, Callable[[dict[str, Any]], None]] = {
    "bandwidth": _bandwidth,
    "bridge": _bridge,
    "portmap": _portmap,
    "vxlan": _vxlan,
}
