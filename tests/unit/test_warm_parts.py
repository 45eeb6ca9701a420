"""Pieces of the warm path and the nft handle records that need no kernel: parsing, and one fork's setup."""

from __future__ import annotations

import ast
import ctypes
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Iterable, Iterator

from cni_common.netfilter import handles
from cni_common.netlink import pyroute2_light
from cni_common.warm import child, context
from plugins import multicall, warm
from tests.helpers import paths

MOUNTINFO = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate
"""


def test_cgroup_mounts_maps_each_hierarchy_as_proc_pid_cgroup_names_it() -> None:
    mounts = context.cgroup_mounts(MOUNTINFO)
    assert mounts == {"cpu,cpuacct": ("/", "/sys/fs/cgroup/cpu,cpuacct"),
                      "name=systemd": ("/", "/sys/fs/cgroup/systemd"), "": ("/", "/sys/fs/cgroup/unified")}


def test_read_gives_the_whole_file_or_nothing(tmp_path: Path) -> None:
    """The mount table is read by plain descriptor (cni_common/procfs.py): the same text as a text-mode read."""
    big = tmp_path / "big"
    big.write_bytes(b"x" * 70000 + "é\n".encode() + b"\xff")  # more than one read; invalid UTF-8 replaced
    assert context._read(str(big)) == "x" * 70000 + "é\n\ufffd"
    assert context._read(str(tmp_path / "absent")) == ""


def test_the_context_key_hash_is_fnv1a_64() -> None:
    """The published FNV-1a 64 test values; tests/binary/test_warm.py proves the launcher's C agrees (a call only
    reaches the warm process whose socket name the launcher computed)."""
    assert context.fnv1a64(b"") == 0xCBF29CE484222325
    assert context.fnv1a64(b"a") == 0xAF63DC4C8601EC8C
    assert context.fnv1a64(b"foobar") == 0x85944171F73967E8
    assert len(context.context_key()) == 16


def test_echoed_takes_only_this_attachments_rules_and_created_tables() -> None:
    echo = """add table ip cni_hostport # handle 7
add chain ip cni_hostport hostports # handle 1
add rule ip cni_hostport hostports_all jump hostports # handle 4
add rule ip cni_hostport hostports tcp dport 8080 dnat to 10.1.0.2:80 comment "cid-a" # handle 5
add rule ip cni_hostport hostports tcp dport 8081 dnat to 10.1.0.3:80 comment "cid-ab" # handle 6
add rule ip cni_hostport masquerading ip saddr 10.1.0.0/16 ip daddr 10.1.0.2 masquerade comment "cid-a" # handle 8
# new generation 9 by process 1 (nft)
"""
    tables, rules = handles.echoed(echo, ("hostports", "masquerading"), "cid-a")
    assert tables == {"ip cni_hostport": 7}
    assert rules == [("ip", "cni_hostport", "hostports", 5), ("ip", "cni_hostport", "masquerading", 8)]


def test_a_record_is_void_once_its_table_was_made_again() -> None:
    record = handles.Record({"ip cni_hostport": 7}, [("ip", "cni_hostport", "hostports", 5)])
    assert record.valid_rules({("ip", "cni_hostport"): 7}) == [("ip", "cni_hostport", "hostports", 5)]
    assert record.valid_rules({("ip", "cni_hostport"): 8}) is None
    assert record.valid_rules({}) is None


def test_each_child_draws_other_random_numbers() -> None:
    """`random` is seeded at import, in the warm process: each child must draw numbers of its own, though the warm
    process forks without the at-fork hooks (cni_common/bundle/warm_loop.h: libc's fork(), as called here),
    random's own reseed among them: child.start reseeds it."""
    random.seed(1234)
    bare_fork = ctypes.PyDLL(None).fork
    draws = []
    for _ in range(2):
        read_end, write_end = os.pipe()
        pid = bare_fork()
        if pid == 0:
            try:
                child.start()
                null = os.open(os.devnull, os.O_RDWR)
                saved = [os.dup(fd) for fd in (0, 1, 2)]
                child.become_caller(child.Request(0o022, ["host-local"], {"A": "b"}),
                                    [os.dup(null), os.dup(null), os.dup(saved[2]), os.open(".", os.O_RDONLY)])
                ok = os.environ == {"A": "b"} and os.umask(0o022) == 0o022
                os.write(write_end, f"{random.random()} {ok}".encode())
            finally:
                os._exit(0)
        os.close(write_end)
        os.waitpid(pid, 0)
        draws.append(os.read(read_end, 100).decode())
        os.close(read_end)
    assert draws[0] != draws[1]
    assert all(d.endswith(" True") for d in draws)


#: The at-fork hooks the preloaded modules register, and why a child of the warm process needs none of them run
#: (its fork is libc's, in cni_common/bundle/warm_loop.h): threading's makes locks and thread records usable again
#: when another thread held them at the fork, and the warm process has one thread (server.serve checks); random's
#: reseed is done by child.start. (The standard ``logging``, whose hooks are of threading's kind, is no longer
#: preloaded: only the modes' modules imported it.)
REVIEWED_AT_FORK_HOOKS = {"threading._after_fork", "random.Random.seed"}


def test_the_preload_registers_only_the_reviewed_at_fork_hooks() -> None:
    """A module that starts registering a hook of its own fails this test: then decide what its warm child must
    do in the hook's place."""
    script = """
import os, sys
hooks = []
def record(**callbacks):
    hooks.extend(f"{getattr(f, '__module__', '?')}.{f.__qualname__}" for f in callbacks.values())
os.register_at_fork = record
from plugins import warm
warm.preload()
print("\\n".join(sorted(set(hooks))))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                         cwd=paths.REPO).stdout
    assert set(out.split()) == REVIEWED_AT_FORK_HOOKS


def test_a_warm_process_with_a_second_thread_does_not_serve(tmp_path: Path) -> None:
    """Its fork runs no at-fork hook, which is right only with one thread: a preload that started another makes
    serve() give up before it listens or says it is ready (the launcher then execs, as with no warm process)."""
    (tmp_path / "warm").mkdir()
    script = f"""
import os, sys, threading, time, types
sys.frozen = True
sys.executable = {str(tmp_path / "cni-suite")!r}
sys.modules["_cni_suite"] = types.ModuleType("_cni_suite")
from cni_common.warm import server
in_use = os.open({str(tmp_path)!r}, os.O_RDONLY)
ready_read, ready_write = os.pipe()
def preload():
    threading.Thread(target=time.sleep, args=(2,), daemon=True).start()
code = server.serve(["600", str(in_use), str(ready_write)], preload, lambda argv: 0)
os.close(ready_write)
print(code, os.read(ready_read, 1) == b"", sorted(os.listdir({str(tmp_path / "warm")!r})))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                          cwd=paths.REPO)
    assert done.stdout.split(None, 2)[:2] == ["2", "True"]
    assert ".sock" not in done.stdout
    assert "started a thread" in done.stderr


def _import_statements(nodes: Iterable[ast.AST]) -> Iterator[ast.Import | ast.ImportFrom]:
    """The import statements among and under ``nodes`` (functions included), but a TYPE_CHECKING block's (only the
    type checker runs those)."""
    for node in nodes:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            yield from _import_statements(node.orelse)
        else:
            yield from _import_statements(ast.iter_child_nodes(node))


def _imported_by(module: str, path: Path) -> set[str]:
    """Every dotted name ``module``'s source imports, with its parents (importing ``a.b`` runs ``a``) and, for
    ``from a import b``, ``a.b`` as well (a module or an attribute: the callers tell)."""
    is_package = path.name == "__init__.py"
    names: set[str] = set()
    for node in _import_statements([ast.parse(path.read_text())]):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        else:
            base = module.split(".")[:None if is_package else -1]
            base = base[:len(base) - node.level + 1] if node.level else []
            target = ".".join([*base, *([node.module] if node.module else [])])
            names.add(target)
            names.update(f"{target}.{alias.name}" for alias in node.names)
    return {".".join(name.split(".")[:i]) for name in names for i in range(1, name.count(".") + 2)}


#: Modules a call's code imports that the preload leaves out on purpose, and why.
NOT_PRELOADED = {
    "ctypes": "netns's fallback for setns/unshare where Python has neither (3.12 has) and the program's built-in "
              "_cni_suite is absent: never in a warm child",
}


def test_the_preload_is_exactly_what_a_plugin_call_can_import() -> None:
    """Every module a plugin's call can import is preloaded (a lazy import left to the child costs each call its
    load), and every module of the suite none can import is skipped (the modes' own: their memory would cost every
    fork and exit, warm.SKIP). What a call can import: the plugins' modules, what they import anywhere, and the
    modules the netlink layer loads by name; the standard library's and pyroute2's are checked against what a
    preload really leaves in ``sys.modules``."""
    sources = {name: Path(path) for name, path in warm.package_modules(str(paths.REPO)).items()}
    roots = [*multicall.PLUGINS.values(), "plugins.multicall", "cni_common.inprocess",
             *(name for name in pyroute2_light.MODULES.values() if name in sources)]
    reached: set[str] = set()
    others: set[str] = set()
    while roots:
        module = roots.pop()
        if module in sources and module not in reached:
            reached.add(module)
            imported = _imported_by(module, sources[module])
            roots.extend(imported | {module.rsplit(".", 1)[0]})
            others.update(name for name in imported if name.split(".")[0] not in warm.PACKAGES)
    preloaded = set(warm.suite_modules(str(paths.REPO)))
    assert preloaded == {name for name in sources if not name.startswith(warm.SKIP)}
    assert sorted(reached - preloaded) == []
    assert sorted(preloaded - reached) == []
    script = """
import importlib.util, sys
from plugins import warm
warm.preload()
loaded = set(sys.modules)
for name in sys.stdin.read().split():
    try:
        module = importlib.util.find_spec(name) is not None  # a module, not an attribute a from-import takes
    except (ImportError, ValueError):
        module = False
    if module and name not in loaded:
        print(name)
"""
    out = subprocess.run([sys.executable, "-c", script], input="\n".join(sorted(others)), capture_output=True,
                         text=True, check=True, cwd=paths.REPO).stdout
    assert sorted(out.split()) == sorted(NOT_PRELOADED)
