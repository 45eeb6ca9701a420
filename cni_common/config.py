"""Reading plugin configuration the way the Go plugins' JSON decoder does.

Go's ``encoding/json`` matches object keys case-insensitively, and runtimes rely on it: containerd sends
``runtimeConfig.portMappings`` as ``HostPort``/``ContainerPort`` (its struct has no JSON tags). So every key
lookup here prefers the exact spelling and falls back to a case-insensitive match. Typed getters raise
CNIError code 7 (invalid config) naming the key and the value, so the runtime's message points at the problem.
"""

from __future__ import annotations

from .errors import CNIError, ErrorCode

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~4 ms per plugin process)
if TYPE_CHECKING:
    from typing import Any, Mapping, Optional, TypeVar

    T = TypeVar("T")

_MISSING: Any = object()


def get_key(d: Mapping[str, Any], key: str, default: Any = None) -> Any:
    """``d[key]``, matched case-insensitively when the exact spelling is absent."""
    if key in d:
        return d[key]
    lowered = key.lower()
    for candidate, value in d.items():
        if isinstance(candidate, str) and candidate.lower() == lowered:
            return value
    return default


def _type_name(expected: type | tuple[type, ...]) -> str:
    names = {bool: "a boolean", int: "an integer", str: "a string", list: "a list", dict: "an object"}
    if isinstance(expected, tuple):
        return " or ".join(names.get(t, t.__name__) for t in expected)
    return names.get(expected, expected.__name__)


def get_typed(d: Mapping[str, Any], key: str, expected: type | tuple[type, ...], default: T, where: str = "") -> Any:
    """Look ``key`` up and check its JSON type; ``null`` counts as absent, like Go's zero values.

    ``bool`` is not accepted where an integer is expected (Python's ``bool`` subclasses ``int``; JSON's do not).
    """
    value = get_key(d, key, _MISSING)
    if value is _MISSING or value is None:
        return default
    wanted = expected if isinstance(expected, tuple) else (expected,)
    is_bool_for_int = isinstance(value, bool) and bool not in wanted
    if not isinstance(value, wanted) or is_bool_for_int:
        label = f"{where}.{key}" if where else key
        raise CNIError(ErrorCode.INVALID_CONFIG, f"invalid config: {label} must be {_type_name(expected)}",
                       f"got {value!r}")
    return value


def get_bool(d: Mapping[str, Any], key: str, default: bool = False, where: str = "") -> bool:
    return bool(get_typed(d, key, bool, default, where))


def get_int(d: Mapping[str, Any], key: str, default: int = 0, where: str = "") -> int:
    return int(get_typed(d, key, int, default, where))


def get_str(d: Mapping[str, Any], key: str, default: str = "", where: str = "") -> str:
    return str(get_typed(d, key, str, default, where))


def get_list(d: Mapping[str, Any], key: str, where: str = "") -> list[Any]:
    return list(get_typed(d, key, list, [], where))


def get_dict(d: Mapping[str, Any], key: str, where: str = "") -> dict[str, Any]:
    return dict(get_typed(d, key, dict, {}, where))


def _check_str_list(d: Mapping[str, Any], key: str, where: str) -> None:
    for item in get_typed(d, key, list, [], where):
        if item is not None and not isinstance(item, str):
            raise CNIError(ErrorCode.INVALID_CONFIG, f"invalid config: {where}.{key} must be a list of strings",
                           f"got {item!r}")


def check_netconf_types(conf: Mapping[str, Any], runtime_config: bool = True) -> None:
    """The JSON types of the keys every Go plugin decodes into ``types.NetConf`` (``type``, ``capabilities``,
    ``ipam.type``, ``dns``, ``prevResult``) and of the ``runtimeConfig`` object: Go refuses a config whose value
    there has another type (its decoder error, code 999 there), so a config the Go plugins refuse is refused
    here too, as code 7 naming the key. ``null`` is allowed everywhere, as Go's decoder allows it. ``name``
    and ``cniVersion`` are checked by the skel. host-local does not call this: Go's host-local decodes only
    ``ipam``, ``args`` and ``runtimeConfig`` (a ``"type": 5`` passes there), and a delegate must give the same
    verdict. ``runtime_config`` False: the plugin has no runtimeConfig of its own (loopback, ptp), and Go's,
    decoding only ``types.NetConf``, accepts any value there."""
    get_typed(conf, "type", str, "")
    for cap, value in get_typed(conf, "capabilities", dict, {}).items():
        if value is not None and not isinstance(value, bool):
            raise CNIError(ErrorCode.INVALID_CONFIG, f"invalid config: capabilities.{cap} must be a boolean",
                           f"got {value!r}")
    get_typed(get_typed(conf, "ipam", dict, {}), "type", str, "", "ipam")
    dns = get_typed(conf, "dns", dict, {})
    get_typed(dns, "domain", str, "", "dns")
    for key in ("nameservers", "search", "options"):
        _check_str_list(dns, key, "dns")
    get_typed(conf, "prevResult", dict, {})
    if runtime_config:
        get_typed(conf, "runtimeConfig", dict, {})  # bridge, portmap and vxlan have one


def runtime_config(conf: Mapping[str, Any]) -> dict[str, Any]:
    """The ``runtimeConfig`` object the runtime injected for the enabled capabilities (``{}`` when none)."""
    return get_dict(conf, "runtimeConfig")


def args_cni(conf: Mapping[str, Any]) -> dict[str, Any]:
    """The conventional ``args.cni`` object (``{}`` when absent)."""
    return get_dict(get_dict(conf, "args"), "cni", where="args")


def parse_cni_args(raw: str) -> dict[str, str]:
    """Parse ``K=V;K2=V2`` tolerantly.

    Upstream's parser rejects empty segments and values containing ``=``; every chained plugin and its IPAM see
    the same string (cni #560), so we accept both: empty segments are skipped and the value is everything after
    the first ``=``. A segment with no ``=`` at all is malformed and named in the error (code 4).
    """
    pairs: dict[str, str] = {}
    for segment in raw.split(";"):
        segment = segment.strip()
        if not segment:
            continue
        key, sep, value = segment.partition("=")
        if not sep or not key:
            raise CNIError(ErrorCode.INVALID_ENV, f"CNI_ARGS: invalid pair {segment!r}", "expected KEY=VALUE")
        pairs[key] = value
    return pairs


def optional_str(d: Mapping[str, Any], key: str) -> Optional[str]:
    """A string value or None when absent or empty."""
    value = get_str(d, key)
    return value or None


ATTACHMENT_KEYS = ("cni.dev/valid-attachments", "cni.dev/attachments")


def valid_attachments(conf: Mapping[str, Any]) -> Optional[set[tuple[str, str]]]:
    """GC's ``(containerID, ifname)`` pairs to keep, from either spelling of the key (the spec text of the
    1.1.0 tag said ``cni.dev/attachments``; libcni 1.2.3 sends both). None when both are absent: no runtime
    leaves the key out on purpose, so GC then removes nothing. ``null`` counts as an empty list, as it does
    for the Go decoder, and an empty list is meaningful: nothing is valid any more.
    """
    key = next((k for k in ATTACHMENT_KEYS if k in conf), None)
    if key is None:
        return None
    raw = conf[key] or []
    if not isinstance(raw, list):
        raise CNIError(ErrorCode.INVALID_CONFIG, f"invalid {key}: expected a list, got {raw!r}")
    out: set[tuple[str, str]] = set()
    for item in raw:
        cid = get_key(item, "containerID") if isinstance(item, dict) else None
        ifname = get_key(item, "ifname") if isinstance(item, dict) else None
        if not isinstance(cid, str) or not cid or not isinstance(ifname, str):
            raise CNIError(ErrorCode.INVALID_CONFIG, f"invalid entry in {key}: {item!r}",
                           "each entry needs a string containerID and ifname")
        out.add((cid.strip(), ifname))
    return out
