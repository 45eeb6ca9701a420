"""``cni-suite install``: put the suite's plugins and a network config on a node, as a DaemonSet pod does.

Every network add-on on Kubernetes ships such an installer (flannel, Calico, Cilium, Multus); the complaints
about them are the checklist here (see docs/kubernetes.md):

- plugin files appear by ``rename(2)`` from a temporary file in the same directory, never written in place
  ("text file busy", half a binary); files whose bytes are already there are left alone;
- the types are hard links to ONE copy (the single file is the same program under every type's name): one file
  in ``/opt/cni/bin``, and an upgrade switches every name to the new build, each by one rename;
- the config list is written only after every plugin it names is there (a runtime acts as soon as it sees a
  config), only after the suite's own parsers accepted it, and by rename (never half a config);
- ``--watch`` stays up and re-installs when an input or an installed file changes, and retries a failed
  re-install with back-off even when nothing changes (a full disk freed, a directory fixed); on SIGTERM it
  removes the config it wrote only with ``--remove-config-on-exit`` (pods still being torn down need DEL, so
  by default the config stays, as Cilium does);
- ``--warm off|on|auto`` writes the plugins' warm-path switch into the node's launcher cache (``install_warm``),
  before the plugin files, so the first call of a new build already sees it; with ``--watch`` the flag is read
  once (a change takes effect with the next rollout) and a file someone altered is written again;
- a failure (directory not writable, disk full, bad config) exits non-zero with one line saying what and
  why, and leaves the previous files as they were.

Exit codes: 0 done, 1 files could not be written or removed, 2 usage, 3 the config was refused.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Optional

from cni_common.bundle import trailer
from cni_common.durable import fsync_dir
from cni_common.log import configure, get_logger
from plugins import install_config, install_files, install_node, install_warm
from plugins.install_config import ConfigRefused
from plugins.install_files import InstallError
from plugins.multicall import PLUGINS

log = get_logger("cni-suite install")

#: The CNI types the single file answers to: the suite's one table.
PLUGIN_TYPES = tuple(PLUGINS)
EXIT_IO, EXIT_USAGE, EXIT_REFUSED = 1, 2, 3
DEFAULT_BIN_DIR = "/host/opt/cni/bin"
DEFAULT_CONF_DIR = "/host/etc/cni/net.d"
DEFAULT_CONFLIST_NAME = "10-cni-suite.conflist"
#: ``--watch`` retries a failed re-install after ``--interval``, then twice as long each time, up to this (the
#: kubelet's restart back-off of a crashing container stops at five minutes too).
RETRY_MAX_SECONDS = 300.0


def build_parser() -> argparse.ArgumentParser:
    """The command line; also read by the manifest test to check the DaemonSets' flags."""
    p = argparse.ArgumentParser(
        prog="cni-suite install",
        description="Install the suite's plugins (and optionally a network config list) into a node's CNI "
                    "directories, atomically. Exit codes: 1 write/remove failed, 2 usage, 3 config refused.")
    p.add_argument("--bin-dir", default=DEFAULT_BIN_DIR, help=f"CNI plugin directory (default {DEFAULT_BIN_DIR})")
    p.add_argument("--conf-dir", default=DEFAULT_CONF_DIR,
                   help=f"CNI config directory (default {DEFAULT_CONF_DIR})")
    p.add_argument("--source", default="",
                   help="the single file to install (default: the file this command runs from)")
    p.add_argument("--plugins", default=",".join(PLUGIN_TYPES),
                   help="comma-separated types to install under their names (default: every type)")
    p.add_argument("--conflist", default="",
                   help="template of the network config list (JSON; ${NAME} in string values is replaced by "
                        "the environment variable NAME); without it no config is written")
    p.add_argument("--conflist-name", default=DEFAULT_CONFLIST_NAME,
                   help=f"file name in --conf-dir (default {DEFAULT_CONFLIST_NAME}; runtimes take the first "
                        "by name)")
    p.add_argument("--node-subnets", default="",
                   help="file of '<node name> <CIDR>' lines: sets POD_CIDR from NODE_NAME's line when POD_CIDR "
                        "is not set")
    p.add_argument("--pod-cidr-from-api", action="store_true",
                   help="set POD_CIDR, POD_CIDRS, POD_DEFAULT_ROUTES from NODE_NAME's spec.podCIDRs, read from the "
                        "Kubernetes API with the pod's service account (waits until the node has one)")
    p.add_argument("--check", action="store_true",
                   help="only render and validate --conflist, print it, write nothing")
    p.add_argument("--watch", action="store_true",
                   help="stay up and re-install when an input or an installed file changes (until SIGTERM); with "
                        "--uninstall: stay up after removing (a DaemonSet's container must not exit)")
    p.add_argument("--interval", type=float, default=5.0, help="--watch poll interval in seconds (default 5)")
    p.add_argument("--remove-config-on-exit", action="store_true",
                   help="with --watch: on SIGTERM/SIGINT remove the config this installer wrote")
    p.add_argument("--uninstall", action="store_true",
                   help="remove the config list --conflist-name instead of installing")
    p.add_argument("--remove-binaries", action="store_true",
                   help="with --uninstall: also remove the plugin files that are builds of this suite")
    p.add_argument("--warm", choices=install_warm.WARM_MODES,
                   help="write the plugins' warm-path switch into <--cache-dir>/warm-mode (off: every call execs; "
                        "auto: a runtime's calls use a warm process; on: every root call does); without it the "
                        "file is left as it is")
    p.add_argument("--cache-dir", default=None,
                   help="the node's launcher cache, for --warm, and for --uninstall --remove-binaries, which "
                        f"removes the warm-mode file this installer wrote (default {install_warm.DEFAULT_CACHE_DIR})")
    p.add_argument("--log-level", default="info", help="debug, info, warning, error (default info)")
    return p


@dataclass
class Options:
    bin_dir: str
    conf_dir: str
    source: str
    types: list[str]
    conflist: str
    conflist_name: str
    node_subnets: str
    #: ``--warm``: the switch to write into ``cache_dir``; None leaves the file alone.
    warm: Optional[str] = None
    cache_dir: str = install_warm.DEFAULT_CACHE_DIR
    #: Template variables read from the API once at the start (a node's pod CIDRs never change).
    node_variables: Optional[dict[str, str]] = None

    @property
    def conflist_path(self) -> str:
        return os.path.join(self.conf_dir, self.conflist_name)

    def targets(self) -> list[str]:
        return [os.path.join(self.bin_dir, t) for t in self.types]


def main(args: list[str]) -> int:
    """``cni-suite install ARGS``: the dispatcher (plugins/multicall.py) passes the words after ``install``."""
    parser = build_parser()
    opts = parser.parse_args(args)
    _check_combinations(parser, opts)
    configure(opts.log_level if opts.log_level.upper() in ("DEBUG", "INFO", "WARNING", "ERROR") else "info")
    try:
        options = _options(opts, sys.argv[0])  # the launcher keeps argv[0]: the single file we run from
        if opts.pod_cidr_from_api:
            options.node_variables = install_node.node_variables(os.environ)
        if opts.check:
            sys.stdout.write(_render(options, dict(os.environ))[0])
            return 0
        if opts.uninstall:
            uninstall(options, remove_binaries=opts.remove_binaries)
            return _wait_for_stop() if opts.watch else 0
        installed = reconcile(options, dict(os.environ))
    except ConfigRefused as exc:
        log.error("config refused, the previous config left as it was: %s", exc)
        return EXIT_REFUSED
    except InstallError as exc:
        log.error("%s (previous files left as they were)", exc)
        return EXIT_IO
    except OSError as exc:  # a directory that cannot be created or listed: the same kind of failure
        log.error("%s (previous files left as they were)", install_files.describe(exc, exc.filename or "file"))
        return EXIT_IO
    if opts.watch:
        return watch(options, installed, opts.interval, opts.remove_config_on_exit)
    return 0


def _check_combinations(parser: argparse.ArgumentParser, opts: argparse.Namespace) -> None:
    """Usage errors (exit 2) for options that would otherwise be silently ignored or write a bad name."""
    unknown = sorted(set(t for t in opts.plugins.split(",") if t) - set(PLUGIN_TYPES))
    if unknown or not opts.plugins.strip(","):
        parser.error(f"--plugins: {', '.join(unknown) or 'empty'} (choose from {', '.join(PLUGIN_TYPES)})")
    if "/" in opts.conflist_name or not opts.conflist_name.endswith(".conflist"):
        parser.error(f"--conflist-name: {opts.conflist_name!r} must be a file name ending in .conflist")
    if opts.remove_binaries and not opts.uninstall:
        parser.error("--remove-binaries goes with --uninstall")
    if opts.remove_config_on_exit and not opts.watch:
        parser.error("--remove-config-on-exit goes with --watch")
    if opts.check and not opts.conflist:
        parser.error("--check needs --conflist")
    if opts.check and (opts.watch or opts.uninstall):
        parser.error("--check goes alone (it writes nothing)")
    if opts.remove_config_on_exit and opts.uninstall:
        parser.error("--remove-config-on-exit does not go with --uninstall")
    if opts.pod_cidr_from_api and opts.node_subnets:
        parser.error("--pod-cidr-from-api and --node-subnets are two sources of the same POD_CIDR: choose one")
    if opts.pod_cidr_from_api and (opts.uninstall or not opts.conflist):
        parser.error("--pod-cidr-from-api goes with --conflist (it fills the template), not with --uninstall")
    if opts.warm and (opts.check or opts.uninstall):
        parser.error("--warm goes with an install, not with --check or --uninstall")
    if opts.cache_dir is not None and not (opts.warm or opts.remove_binaries):
        parser.error("--cache-dir goes with --warm or --uninstall --remove-binaries")
    if opts.interval <= 0:
        parser.error("--interval must be positive")


def _options(opts: argparse.Namespace, argv0: str) -> Options:
    types = [t for t in opts.plugins.split(",") if t]
    return Options(bin_dir=opts.bin_dir, conf_dir=opts.conf_dir, source=opts.source or _self_path(argv0),
                   types=types, conflist=opts.conflist, conflist_name=opts.conflist_name,
                   node_subnets=opts.node_subnets, warm=opts.warm,
                   cache_dir=opts.cache_dir or install_warm.DEFAULT_CACHE_DIR)


def _self_path(argv0: str) -> str:
    """The single file we run from: the launcher keeps ``argv`` as it was, so ``argv[0]`` names it."""
    if "/" in argv0:
        return argv0
    for directory in os.environ.get("PATH", os.defpath).split(os.pathsep):
        candidate = os.path.join(directory, argv0)
        if os.access(candidate, os.X_OK):
            return candidate
    return argv0


# ------------------------------------------------------------------------------------------------ install


def reconcile(options: Options, env: dict[str, str]) -> "Installed":
    """One full install: validate the config, then the binaries, then the config. Idempotent."""
    rendered = _render(options, env) if options.conflist else None
    source = _read_source(options.source)
    if options.warm and install_warm.write_mode(options.cache_dir, options.warm):
        # before the plugin files: the first call of a new build already sees the switch
        log.info("wrote %s: %s", install_warm.mode_path(options.cache_dir), options.warm)
    os.makedirs(options.bin_dir, exist_ok=True)
    with install_files.locked_dir(options.bin_dir):
        install_files.remove_leftovers(options.bin_dir)
        _install_binaries(source, options)
    if rendered is None:
        return Installed(config=None)
    text, needed = rendered
    missing = [t for t in needed if not os.access(os.path.join(options.bin_dir, t), os.X_OK)]
    if missing:
        raise ConfigRefused(f"plugins: no executable {', '.join(missing)} in {options.bin_dir} (a runtime would "
                            f"fail every pod): install it first or remove it from the list")
    os.makedirs(options.conf_dir, exist_ok=True)
    data = text.encode()
    with install_files.locked_dir(options.conf_dir):
        install_files.remove_leftovers(options.conf_dir)
        if install_files.file_digest(options.conflist_path) != hashlib.sha256(data).hexdigest():
            temp = install_files.write_temp(options.conf_dir, data, 0o644)
            install_files.publish(temp, options.conflist_path)
            fsync_dir(options.conf_dir)
            log.info("wrote %s", options.conflist_path)
    return Installed(config=data)


@dataclass
class Installed:
    """What the last install wrote (the config's bytes: removed on exit only if still ours)."""

    config: Optional[bytes]


def _read_source(path: str) -> bytes:
    if not trailer.build_hash(path):
        raise InstallError(f"--source: {path} is not a single-file build of the suite (./build.sh makes one)")
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise install_files.describe(exc, f"cannot read {path}") from exc


def _install_binaries(source: bytes, options: Options) -> None:
    digest = hashlib.sha256(source).hexdigest()
    digests = install_files.DigestCache()  # the four names are usually one file: hash it once
    stale = [t for t in options.targets() if digests.of(t) != digest]
    if not stale:
        log.debug("plugins already installed in %s", options.bin_dir)
        return
    staged = install_files.write_temp(options.bin_dir, source, 0o755)
    try:
        install_files.link_all(staged, stale)
    finally:
        install_files.remove_if_present(staged)
    fsync_dir(options.bin_dir)
    build = trailer.hash_in(source[-trailer.SIZE:])[:12]
    log.info("installed %s (build %s) into %s", ", ".join(os.path.basename(t) for t in stale), build,
             options.bin_dir)


def _render(options: Options, env: dict[str, str]) -> tuple[str, list[str]]:
    """The config list's text and the plugin types it needs; :class:`ConfigRefused` when it is not valid."""
    template = install_config.parse_template(_read_text(options.conflist, "--conflist"), options.conflist)
    if options.node_subnets and "POD_CIDR" not in env:
        if not env.get("NODE_NAME"):
            raise ConfigRefused("--node-subnets needs the environment variable NODE_NAME (the downward API's "
                                "spec.nodeName)")
        subnet = install_config.node_subnet(_read_text(options.node_subnets, "--node-subnets"), env["NODE_NAME"])
        env = {**install_node.cidr_variables([subnet]), **env}
    if options.node_variables:
        env = {**options.node_variables, **env}  # fills what the environment does not set, as --node-subnets
    conflist = install_config.render(template, env)
    needed = install_config.validate(conflist)
    return json.dumps(conflist, indent=2) + "\n", needed


def _read_text(path: str, flag: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as exc:
        raise ConfigRefused(f"{flag}: cannot read {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigRefused(f"{flag}: {path} is not UTF-8 text") from exc


# ---------------------------------------------------------------------------------------------- uninstall


def uninstall(options: Options, remove_binaries: bool) -> None:
    """Remove the config list (the runtime stops using the network for NEW pods at once); with
    ``remove_binaries`` also the plugin files that are builds of this suite (never another add-on's) and the
    warm-mode file an installer wrote (it governed those files). Without ``remove_binaries`` the switch stays:
    the plugin files stay too, and pods still being deleted call them as the operator chose."""
    if install_files.remove_if_present(options.conflist_path):
        fsync_dir(options.conf_dir)
        log.info("removed %s", options.conflist_path)
    if not remove_binaries:
        return
    removed = [t for t in options.targets() if trailer.build_hash(t) and install_files.remove_if_present(t)]
    if removed:
        fsync_dir(options.bin_dir)
        log.info("removed %s", ", ".join(removed))
    try:
        if install_warm.remove_mode(options.cache_dir):  # the switch of the files just removed (an operator's stays)
            log.info("removed %s", install_warm.mode_path(options.cache_dir))
    except InstallError as exc:  # a folder the launcher refuses too: nothing of ours to act on in it
        log.warning("%s: its warm-mode left in place", exc)


# ------------------------------------------------------------------------------------------------- watch


def _stop_event() -> threading.Event:
    """Set by SIGTERM (the kubelet stopping the pod) or SIGINT."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def _wait_for_stop() -> int:
    """``--uninstall --watch``: the work is done; stay up until the pod is deleted (a DaemonSet's container that
    exits is restarted, and its pod never counts as ready)."""
    log.info("uninstalled; waiting for SIGTERM")
    stop = _stop_event()
    while not stop.wait(60):  # a timed wait: the signal handler runs between two waits at the latest
        pass
    return 0


class Backoff:
    """When to retry a failed re-install when nothing changed: ``first`` seconds after the failure, then twice
    as long after each further failure, up to ``limit``; forgotten after a success."""

    def __init__(self, first: float, limit: float) -> None:
        self.first, self.limit = first, limit
        self.delay = 0.0
        self.retry_at: Optional[float] = None  # time.monotonic() of the next retry; None: nothing failed

    def failed(self) -> float:
        """Note a failure; returns the seconds until the retry."""
        self.delay = min(self.limit, self.delay * 2 if self.delay else self.first)
        self.retry_at = time.monotonic() + self.delay
        return self.delay

    def succeeded(self) -> bool:
        """Note a success; True when it ends a run of failures."""
        failing = self.retry_at is not None
        self.delay, self.retry_at = 0.0, None
        return failing

    def due(self) -> bool:
        return self.retry_at is not None and time.monotonic() >= self.retry_at

    def wait(self, interval: float) -> float:
        """How long to sleep before the next look: the poll ``interval``, or less when a retry comes sooner."""
        if self.retry_at is None:
            return interval
        return max(0.0, min(interval, self.retry_at - time.monotonic()))


def watch(options: Options, installed: Installed, interval: float, remove_config_on_exit: bool,
          retry_max: float = RETRY_MAX_SECONDS) -> int:
    """Poll the inputs and the installed files every ``interval`` s; re-install when any of them changed.

    Polling, not inotify: ConfigMap volumes change by a symlink swap, hostPath files by anyone, and a few
    ``stat`` calls (plus reading two small text files) every few seconds cost nothing measurable. A failed
    re-install is logged and retried at the next change, and without one after ``interval``, then twice as long
    each time up to ``retry_max`` (:class:`Backoff`): the cause (a full disk, a directory in the way, a
    missing plugin) may go away without any input changing. The previous files stay in place meanwhile.
    """
    stop = _stop_event()
    seen = _fingerprint(options)
    backoff = Backoff(interval, retry_max)
    log.info("watching every %gs", interval)
    while not stop.wait(backoff.wait(interval)):
        now = _fingerprint(options)
        if now == seen and not backoff.due():
            continue
        # What this re-install starts from: a change made while it runs (a file deleted just after it was
        # checked) differs from it at the next look. Its own writes do too, once: a re-install that finds
        # everything in place writes nothing.
        seen = now
        try:
            installed = reconcile(options, dict(os.environ))
        except (ConfigRefused, InstallError, OSError) as exc:
            log.error("re-install failed, previous files kept; retrying in %gs or at the next change: %s",
                      backoff.failed(), exc)
        else:
            if backoff.succeeded():
                log.info("re-install succeeded")
    if remove_config_on_exit and installed.config is not None:
        _remove_own_config(options, installed.config)
    log.info("stopped")
    return 0


def _fingerprint(options: Options) -> tuple[Any, ...]:
    """Cheap identity of every input and every installed file: stat of files we own or write, contents of
    the small templates (a ConfigMap update keeps mtimes of the files the container sees)."""
    def ident(path: str) -> Any:
        try:
            st = os.lstat(path)
        except OSError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def text(path: str) -> Any:
        try:
            with open(path, "rb") as f:
                return f.read()
        except OSError:
            return None

    paths = [options.source, *options.targets()] + ([options.conflist_path] if options.conflist else [])
    return (tuple(ident(p) for p in paths), text(options.conflist) if options.conflist else None,
            text(options.node_subnets) if options.node_subnets else None,
            install_warm.fingerprint(options.cache_dir) if options.warm else None)


def _remove_own_config(options: Options, written: bytes) -> None:
    """Remove the config list only when it still holds what we wrote (someone else's is not ours to drop)."""
    if install_files.file_digest(options.conflist_path) != hashlib.sha256(written).hexdigest():
        log.info("%s is not the config this installer wrote: left in place", options.conflist_path)
        return
    try:
        install_files.remove_if_present(options.conflist_path)
        fsync_dir(options.conf_dir)
    except InstallError as exc:
        log.error("%s", exc)
        return
    log.info("removed %s", options.conflist_path)
