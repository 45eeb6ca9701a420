"""The CNI execution protocol: environment and stdin in, one JSON document (or nothing) out.

Every plugin's ``main()`` is one call to :func:`plugin_main`. It validates in the order the Go skel does, so
our error codes match upstream's for the same bad input:

1. required environment variables of the verb (all missing ones named in one code-4 error);
2. container ID and interface name syntax (code 4);
3. stdin (code 5), JSON (code 6), network name (code 7);
4. the config's ``cniVersion`` against the supported list (code 1), and the verbs a version allows (code 1);
5. the netns is not our own (code 8, unless ``CNI_NETNS_OVERRIDE``);
6. dispatch; a :class:`CNIError` is printed as it is, anything else as code 999.

VERSION needs neither stdin nor the other variables, and is answered before anything heavy is imported.
Only this module writes to stdout.

``log`` and ``config`` are imported with this module, not inside the functions that use them: every call but
VERSION configures the log and most read ``CNI_ARGS``, a plugin's module (and so this one) is imported only
after the program answered VERSION, and an import statement inside a function resolves its relative name in
importlib's Python on every call (in a warm child: time, and pages copied from the warm process).
"""

from __future__ import annotations

import json
import os
import re
import sys

from . import log
from . import version as versions
from .config import parse_cni_args
from .errors import CNIError, ErrorCode
from .record import field, record

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~4 ms per plugin process)
if TYPE_CHECKING:
    from typing import IO, Any, Callable, Mapping, Optional

    Handler = Callable[["CmdArgs"], Any]

VERBS = ("ADD", "DEL", "CHECK", "VERSION", "GC", "STATUS")

# Which variables each verb needs (spec 1.1.0 section "Parameters"); CNI_PATH is optional except for GC,
# where it is the only way to reach a delegate. A plugin that delegates reports a missing CNI_PATH itself.
REQUIRED_ENV: dict[str, tuple[str, ...]] = {
    "ADD": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"),
    "DEL": ("CNI_CONTAINERID", "CNI_IFNAME"),
    "CHECK": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"),
    "VERSION": (),
    "GC": ("CNI_PATH",),
    "STATUS": (),
}

# Oldest config version that may carry each verb (checklist section 1.3, step 5).
MIN_VERSION_FOR_VERB = {"CHECK": "0.4.0", "GC": "1.1.0", "STATUS": "1.1.0"}

# fullmatch, never match + "$": "$" also matches before a final newline, and a name "net\n" would become a
# directory name with a newline in it.
_ID_RE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.\-]*")
#: Network names become a directory under dataDir and part of iptables comments: a file name's limit (NAME_MAX).
MAX_NAME_LENGTH = 255
#: Deepest JSON nesting accepted on stdin. Go's decoder stops at 10000; Python's recursive one would hit the
#: interpreter's recursion limit first (a RecursionError, i.e. a crash), so the depth is checked before parsing.
#: No real config nests deeper than a dozen levels.
MAX_JSON_DEPTH = 512


@record
class CmdArgs:
    """Everything one invocation received; handlers read nothing from ``os.environ`` or ``sys.stdin``."""

    command: str
    container_id: str
    netns: str
    ifname: str
    args: str
    path: list[str]
    stdin_data: bytes
    conf: dict[str, Any]
    cni_version: str
    env: Mapping[str, str] = field(default_factory=dict)

    def cni_args(self) -> dict[str, str]:
        """``CNI_ARGS`` as a dict; empty segments are skipped and ``=`` inside values is kept."""
        return parse_cni_args(self.args)

    @property
    def network_name(self) -> str:
        return str(self.conf.get("name", ""))



@record
class CNIFuncs:
    """A plugin's verb handlers; ``add`` returns a :class:`cni_common.types.Result`, the others ``None``.

    ``delete`` because ``del`` is a keyword. A verb left as ``None`` succeeds with no output, as in the Go skel.
    """

    add: Handler
    delete: Handler
    check: Optional[Handler] = None
    gc: Optional[Handler] = None
    status: Optional[Handler] = None

    def for_verb(self, verb: str) -> Optional[Handler]:
        return {"ADD": self.add, "DEL": self.delete, "CHECK": self.check, "GC": self.gc,
                "STATUS": self.status}.get(verb)


def _env(environ: Mapping[str, str], name: str) -> str:
    """An empty variable counts as unset (libcni always exports all six, empty ones included)."""
    return environ.get(name, "").strip()


def validate_ifname(ifname: str) -> None:
    """Linux interface names: 1-15 bytes, not ``.``/``..``, no ``/``, ``:`` or white space (code 4)."""
    problem = ""
    if any("\ud800" <= c <= "\udfff" for c in ifname):  # how os.environ keeps bytes that are not UTF-8
        problem = "is not UTF-8"
    elif len(ifname.encode()) > 15:
        problem = "is longer than 15 characters"
    elif ifname in (".", ".."):
        problem = "is not a valid name"
    elif any(c in ifname for c in "/:") or any(c.isspace() for c in ifname):
        problem = "contains '/', ':' or white space"
    if problem:
        raise CNIError(ErrorCode.INVALID_ENV, f"invalid CNI_IFNAME {ifname!r}: {problem}")


def validate_identifier(value: str, what: str, code: int) -> None:
    """Container IDs and network names become file paths and rule comments: allow a safe alphabet only."""
    if not _ID_RE.fullmatch(value):
        raise CNIError(code, f"invalid {what} {_short(value)}",
                       "must start with a letter or digit and contain only letters, digits, '_', '.' and '-'")


def _nesting_depth_exceeds(text: str, limit: int) -> bool:
    """Whether brackets outside strings nest deeper than ``limit`` (a linear scan; json.loads would recurse)."""
    if text.count("[") + text.count("{") <= limit:
        return False  # cannot nest deeper than there are brackets: the common case costs two counts
    depth = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > limit:
                return True
        elif ch in "]}":
            depth -= 1
    return False


def _refuse_constant(name: str) -> Any:
    """``NaN`` and ``Infinity`` are not JSON (Python's decoder accepts them; Go's, code 6, does not)."""
    raise ValueError(f"{name} is not a JSON value")


#: One decoder for every call: ``json.loads`` with an argument builds a decoder and its scanner per call.
_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)


def _read_conf(stdin: IO[bytes]) -> tuple[bytes, dict[str, Any]]:
    """stdin as UTF-8 JSON, as Go's decoder reads it: no UTF-16/32 detection and no byte-order mark
    (``json.loads(bytes)`` would guess the encoding and accept what every Go plugin refuses; code 6)."""
    try:
        data = stdin.read()
    except OSError as exc:
        raise CNIError(ErrorCode.IO_FAILURE, "error reading from stdin", str(exc)) from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CNIError(ErrorCode.DECODING_FAILURE, "failed to parse network configuration from stdin",
                       f"not UTF-8: {exc}") from exc
    if _nesting_depth_exceeds(text, MAX_JSON_DEPTH):
        raise CNIError(ErrorCode.DECODING_FAILURE, "failed to parse network configuration from stdin",
                       f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        conf = _DECODER.decode(text)
    except (ValueError, RecursionError) as exc:
        raise CNIError(ErrorCode.DECODING_FAILURE, "failed to parse network configuration from stdin",
                       str(exc)) from exc
    if not isinstance(conf, dict):
        raise CNIError(ErrorCode.DECODING_FAILURE, "network configuration must be a JSON object",
                       f"got {type(conf).__name__}")
    if "\\ud" in text or "\\uD" in text:  # maybe a surrogate's escape (\uD800-\uDFFF): rare, two scans
        _replace_lone_surrogates(conf)
    return data, conf


def _without_lone_surrogates(text: str) -> str:
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _replace_lone_surrogates(conf: dict[str, Any]) -> None:
    """Replace every lone surrogate in ``conf``'s keys and strings by U+FFFD, in place, as Go's decoder does.

    JSON may escape a lone surrogate (``"\\ud800"``); Python's decoder keeps it, as a string that has no UTF-8
    form, and any later ``.encode()`` of it would crash as code 999. Iterative: the nesting may reach
    :data:`MAX_JSON_DEPTH`, deeper than the interpreter's recursion allows."""
    stack: list[Any] = [conf]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            items = list(node.items())
            node.clear()
            for key, value in items:
                node[_without_lone_surrogates(key)] = _without_lone_surrogates(value) if isinstance(value, str) \
                    else value
                if isinstance(value, (dict, list)):
                    stack.append(value)
        else:
            for i, value in enumerate(node):
                if isinstance(value, str):
                    node[i] = _without_lone_surrogates(value)
                elif isinstance(value, (dict, list)):
                    stack.append(value)


def _check_network_name(name: Any) -> None:
    """Go's skel: a name that is not a string fails decoding (6); a missing or unsafe one is a config error."""
    if name is not None and not isinstance(name, str):
        raise CNIError(ErrorCode.DECODING_FAILURE, f"invalid config: name must be a string, got {_short(name)}")
    if not name:
        raise CNIError(ErrorCode.INVALID_CONFIG, "missing network name", "the config has no \"name\"")
    validate_identifier(name, "network name", ErrorCode.INVALID_CONFIG)  # first: then it is ASCII, one byte each
    if len(name) > MAX_NAME_LENGTH:
        raise CNIError(ErrorCode.INVALID_CONFIG, f"invalid network name {_short(name)}",
                       f"longer than {MAX_NAME_LENGTH} bytes (it names a directory)")


def _short(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters: error messages must not echo megabytes of input."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _config_version(conf: Mapping[str, Any], supported: tuple[str, ...]) -> str:
    raw = conf.get("cniVersion", "")
    if not isinstance(raw, str):
        raise CNIError(ErrorCode.DECODING_FAILURE, f"cniVersion must be a string, got {_short(raw)}")
    version = raw or "0.1.0"
    if version not in supported:
        raise CNIError(ErrorCode.INCOMPATIBLE_VERSION, "incompatible CNI versions",
                       f'config is "{version}", plugin supports {list(supported)}')
    return version


def is_own_netns(path: str) -> bool:
    """Whether ``path`` is the namespace we run in (an ADD there would rewire the host itself)."""
    try:
        target = os.stat(path)
        own = os.stat("/proc/self/ns/net")
    except OSError:
        return False
    return (target.st_dev, target.st_ino) == (own.st_dev, own.st_ino)


def _configure_logging(conf: Mapping[str, Any], environ: Mapping[str, str], stderr: IO[str]) -> None:
    """Logs go to stderr and, when the config names one, to ``logFile`` too; never to stdout."""
    level = conf.get("logLevel") or environ.get("CNI_LOG_LEVEL", "")
    log_file = conf.get("logFile")
    log.configure(level if isinstance(level, str) else "", log_file if isinstance(log_file, str) else "", stderr)


def _build_args(environ: Mapping[str, str], stdin: IO[bytes], verb: str,
                supported: tuple[str, ...]) -> CmdArgs:
    missing = [name for name in REQUIRED_ENV[verb] if not _env(environ, name)]
    if missing:
        raise CNIError(ErrorCode.INVALID_ENV, f"required env variables [{','.join(missing)}] missing")
    container_id = _env(environ, "CNI_CONTAINERID")
    ifname = _env(environ, "CNI_IFNAME")
    if "CNI_CONTAINERID" in REQUIRED_ENV[verb]:
        validate_identifier(container_id, "CNI_CONTAINERID", ErrorCode.INVALID_ENV)
    if "CNI_IFNAME" in REQUIRED_ENV[verb]:
        validate_ifname(ifname)
    data, conf = _read_conf(stdin)
    _check_network_name(conf.get("name"))
    cni_version = _config_version(conf, supported)
    minimum = MIN_VERSION_FOR_VERB.get(verb)
    if minimum and not versions.at_least(cni_version, minimum):
        raise CNIError(ErrorCode.INCOMPATIBLE_VERSION, f"config version does not allow {verb}",
                       f'config is "{cni_version}", {verb} needs {minimum} or newer')
    netns = _env(environ, "CNI_NETNS")
    override = _env(environ, "CNI_NETNS_OVERRIDE").lower() in ("1", "true")
    if verb in ("ADD", "DEL") and netns and not override and is_own_netns(netns):
        raise CNIError(ErrorCode.INVALID_NETNS, f"CNI_NETNS {netns!r} is the plugin's own network namespace")
    path = [p for p in _env(environ, "CNI_PATH").split(os.pathsep) if p]
    return CmdArgs(command=verb, container_id=container_id, netns=netns, ifname=ifname,
                   args=_env(environ, "CNI_ARGS"), path=path, stdin_data=data, conf=conf,
                   cni_version=cni_version, env=environ)


def _log_unexpected(exc: Exception) -> None:
    """A bug, not bad input: the traceback goes to the log at debug level only (the error JSON names it)."""
    logger = log.get_logger(__name__)
    if logger.is_debug():
        import traceback

        logger.debug("unexpected failure:\n%s", "".join(traceback.format_exception(exc)))


def _print_json(stdout: IO[str], obj: Mapping[str, Any]) -> None:
    """Write the one JSON document. A reader that went away (broken pipe) is not our failure to report:
    stdout is pointed at /dev/null so the interpreter's final flush does not print a traceback either."""
    try:
        stdout.write(json.dumps(obj, indent=4))
        stdout.write("\n")
        stdout.flush()
    except BrokenPipeError:
        if stdout is sys.stdout:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _print_about(stderr: IO[str], about: str, supported: tuple[str, ...]) -> None:
    """Run by hand (no ``CNI_COMMAND``): say what this is on stderr and succeed, as upstream's skel does
    (nothing on stdout, exit 0), then what a built file carries (its C library, for security fixes)."""
    from .bundle.buildinfo import bundled_line

    stderr.write(f"{about}\nCNI protocol versions supported: {', '.join(supported)}\n")
    bundled = bundled_line()
    if bundled:
        stderr.write(bundled + "\n")


def plugin_main(funcs: CNIFuncs, about: str, supported: tuple[str, ...] = versions.SUPPORTED_VERSIONS,
                environ: Optional[Mapping[str, str]] = None, stdin: Optional[IO[bytes]] = None,
                stdout: Optional[IO[str]] = None, stderr: Optional[IO[str]] = None) -> int:
    """Run one CNI invocation and return the exit code (0 success, 1 failure with the error JSON on stdout).

    The streams and the environment are parameters so tests can drive a plugin in-process.
    """
    environ = os.environ if environ is None else environ
    stdin = sys.stdin.buffer if stdin is None else stdin
    stdout = sys.stdout if stdout is None else stdout
    stderr = sys.stderr if stderr is None else stderr

    verb = _env(environ, "CNI_COMMAND")
    if verb == "VERSION":
        stdout.write(versions.version_info_json(supported))
        return 0
    if not verb:
        _print_about(stderr, about, supported)
        return 0
    reply_version = versions.LATEST
    try:
        if verb not in VERBS:
            raise CNIError(ErrorCode.INVALID_ENV, f"unknown CNI_COMMAND: {verb}",
                           f"expected one of {', '.join(VERBS)}")
        args = _build_args(environ, stdin, verb, supported)
        reply_version = args.cni_version
        _configure_logging(args.conf, environ, stderr)
        handler = funcs.for_verb(verb)
        if handler is None:
            return 0
        result = handler(args)
        if verb == "ADD":
            _print_json(stdout, result.to_dict(args.cni_version))
        return 0
    except CNIError as exc:
        _print_json(stdout, exc.to_dict(reply_version))
        return 1
    except Exception as exc:  # noqa: BLE001 - the protocol demands a JSON error for every failure
        _log_unexpected(exc)
        _print_json(stdout, CNIError(ErrorCode.INTERNAL, f"internal error: {exc}", repr(exc)).to_dict(reply_version))
        return 1
