"""Where one attachment's nft rules are: their handles, recorded at ADD, so a DEL (or a repeated ADD) deletes
them by handle instead of listing every pod's rules to find them by comment.

Why: ``nft -j list`` of a chain and the JSON parse grow with the pods of the node, and ran twice per pod (ADD
and DEL) per layout (masquerade, portmap); by handle, a call costs the same with 300 pods as with none
(bench/README.md, the pods curve). The layouts and comments are upstream's, unchanged: a node can switch to the
Go plugins and back, and a rule without a record (made by Go, or by an ADD of ours that died before writing
the record) is found by the listing, as before.

- A record is valid only while its tables are the same kernel objects: it keeps each table's handle, which the
  kernel never reuses within a network namespace (a table deleted and made again gets a new one), and rule
  handles are never reused within a table. A record that is not valid is not trusted: the listing decides.
  Records live under ``/run`` (tmpfs: they go at reboot with the rules) in a folder per network namespace, named
  by its cookie (``SO_NETNS_COOKIE``, never reused; a kernel without it, before 5.14, gets no records and lists
  as before) and inode; folders of namespaces that are gone are swept (:func:`_sweep`).
- ADD learns its rules' handles from the kernel's notifications of its own commit (:func:`add`), not from
  ``nft -e -a``: for the echo, nft 1.0.6 reads the whole ruleset first (3 ms beside an empty table, 11 ms beside
  1,500 rules), which made the ADD grow with the pods.
- ADD writes a ``pending`` record before it applies anything: an ADD that dies between applying and recording
  leaves ``pending``, and the next DEL or ADD lists instead of trusting the record.
- A deletion by handle that the kernel refuses (the rule went meanwhile: GC, an operator's flush) drops the
  record, and the caller falls back to the listing.
- Each layout's shared part (table, chains, the entry rules every full ADD flushes and refills) has a record too,
  keyed by the hash of its lines: the handles of those entry rules as the last full script left them, so that
  the next ADD need not declare them again (:func:`add`). It stays while the tables stay. Our ADDs hold the
  suite lock from commit to record; another writer's re-declaration in between (the Go plugins) would be
  recorded as ours, which only matters if its entry rules differ (another ``conditionsV4``) on a node that runs
  both suites with different configs.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import struct

from ..log import get_logger
from . import runner

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~4 ms per plugin process)
if TYPE_CHECKING:
    from typing import Any, Callable, Optional, Sequence

log = get_logger(__name__)

RECORD_DIR = "/run/cni-suite/nft"
SO_NETNS_COOKIE = 71
SWEEP_ABOVE = 16  # record folders (namespaces) before a save looks for gone ones

#: (family, table, chain, handle) of one rule.
RuleRef = tuple[str, str, str, int]


class Record:
    """The tables' handles and the rules of one attachment (``pending`` while an ADD is applying)."""

    def __init__(self, tables: dict[str, int], rules: list[RuleRef], pending: bool = False) -> None:
        self.tables, self.rules, self.pending = tables, rules, pending

    def valid_rules(self, current: dict[tuple[str, str], int]) -> Optional[list[RuleRef]]:
        """The recorded rules if every table they are in is still the table recorded, else None."""
        for family, table, _, _ in self.rules:
            if current.get((family, table)) != self.tables.get(f"{family} {table}"):
                return None
        return list(self.rules)


def _netns_folder() -> Optional[str]:
    """``<cookie>-<inode>``: the cookie names the namespace for good, the inode lets :func:`_sweep` see it is gone."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as probe:
            (cookie,) = struct.unpack("=Q", probe.getsockopt(socket.SOL_SOCKET, SO_NETNS_COOKIE, 8))
        inode = os.stat("/proc/thread-self/ns/net").st_ino
    except OSError:
        return None
    return f"{RECORD_DIR}/{cookie}-{inode}"


def _sweep() -> None:
    """Drop the records of namespaces that are gone (deleted without DELs: tests, a node's old sandboxes).

    Only when there are more than :data:`SWEEP_ABOVE` folders (a node's rules live in one namespace: never). A
    namespace is alive while a process is in it or a name in /run/netns pins it; one held only by an open
    descriptor may lose its records, which is safe: without a record the listing finds the rules."""
    try:
        folders = os.listdir(RECORD_DIR)
    except OSError:
        return
    if len(folders) <= SWEEP_ABOVE:
        return
    alive: set[int] = set()
    for pinned in _listdir("/run/netns"):
        alive.add(_inode(f"/run/netns/{pinned}"))
    for pid in _listdir("/proc"):
        if pid.isdigit():
            alive.add(_inode(f"/proc/{pid}/ns/net"))
    for folder in folders:
        _, _, inode = folder.partition("-")
        if inode.isdigit() and int(inode) not in alive:
            path = f"{RECORD_DIR}/{folder}"
            for name in _listdir(path):
                try:
                    os.unlink(f"{path}/{name}")
                except OSError:
                    pass
            try:
                os.rmdir(path)
            except OSError:
                pass


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def _inode(path: str) -> int:
    try:
        return os.stat(path).st_ino
    except OSError:
        return 0


def _path(key: Sequence[str]) -> Optional[str]:
    folder = _netns_folder()
    if folder is None:
        return None
    return f"{folder}/{hashlib.sha256(chr(0).join(key).encode()).hexdigest()[:40]}"


def load(key: Sequence[str]) -> Optional[Record]:
    """The record of ``key`` (e.g. ``("portmap", container_id)``), or None."""
    path = _path(key)
    if path is None:
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        with os.fdopen(fd) as f:
            data: Any = json.load(f)
        rules = [(str(f), str(t), str(c), int(h)) for f, t, c, h in data["rules"]]
        return Record({str(k): int(v) for k, v in data["tables"].items()}, rules, bool(data.get("pending")))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def save(key: Sequence[str], record: Record) -> None:
    """Write the record (a temp file renamed over it; tmpfs, so no fsync: a reboot clears rules and records)."""
    path = _path(key)
    if path is None:
        return
    folder = os.path.dirname(path)
    if not os.path.isdir(folder):
        _sweep()  # a namespace's first record: the moment to drop those of gone ones
    os.makedirs(folder, mode=0o700, exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    data = {"tables": record.tables, "rules": record.rules, "pending": record.pending}
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def remove(key: Sequence[str]) -> None:
    path = _path(key)
    if path is None:
        return
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    try:
        os.rmdir(os.path.dirname(path))  # the namespace's last record: leave no empty folder behind
    except OSError:
        pass


def echoed(output: str, chains: Sequence[str], comment: str) -> tuple[dict[str, int], list[RuleRef]]:
    """From ``nft -e -a`` output: the handles of the tables it created, and the rules it added to ``chains``
    with exactly ``comment``."""
    tables: dict[str, int] = {}
    rules: list[RuleRef] = []
    for line in output.splitlines():
        words = line.split()
        if len(words) < 6 or words[0] != "add" or words[-2] != "handle" or words[-3] != "#":
            continue
        if words[1] == "table":
            tables[f"{words[2]} {words[3]}"] = int(words[-1])
        elif words[1] == "rule" and words[4] in chains and f'comment "{comment}" #' in line:
            rules.append((words[2], words[3], words[4], int(words[-1])))
    return tables, rules


def delete_lines(rules: Sequence[RuleRef]) -> list[str]:
    return [f"delete rule {family} {table} {chain} handle {handle}" for family, table, chain, handle in rules]


def expected_rules(script: str, chains: Sequence[str], comment: str) -> int:
    """How many rules with exactly ``comment`` in ``chains`` the script adds (one ``add rule`` line each)."""
    count = 0
    for line in script.splitlines():
        words = line.split()
        if words[:2] == ["add", "rule"] and len(words) > 4 and words[4] in chains and line.endswith(
                f'comment "{comment}"'):
            count += 1
    return count


def _shared_key(script_for: Callable[[list[RuleRef], bool], str]) -> tuple[str, str]:
    """The record key of a layout's shared part (table, chains, entry rules): a hash of those lines of the full
    script that are not this attachment's, so a config that changes them (portmap's conditions, snat) has
    another key, and with it no record: its first ADD declares."""
    own = set(script_for([], False).splitlines())
    shared = "\n".join(line for line in script_for([], True).splitlines() if line not in own)
    return ("shared", hashlib.sha256(shared.encode()).hexdigest())


def _entry_rules(entry_chains: Sequence[tuple[str, str, str]]) -> list[RuleRef]:
    return [(f, t, c, h) for f, t, c in entry_chains for h in runner.nft_chain_rule_handles(f, t, c)]


def _declared_intact(key: tuple[str, str], entry_chains: Sequence[tuple[str, str, str]]) -> bool:
    """True when the entry chains hold exactly the rules (same tables, same rule handles) that the last full
    script of this shared part left: then nothing of the shared part has changed since (a rule handle is never
    reused within a table; a chain deleted or made again, a flush, a re-declaration by the Go plugins or an
    operator's edit all change the handles)."""
    record = load(key)
    if record is None or record.pending or not record.rules:
        return False
    try:
        if record.valid_rules(runner.nft_table_handles()) is None:
            return False
        return sorted(_entry_rules(entry_chains)) == sorted(record.rules)
    except (OSError, runner.NetfilterError):
        return False


def add(what: str, key: Sequence[str], script_for: Callable[[list[RuleRef], bool], str],
        listed_stale: Callable[[], list[RuleRef]], chains: Sequence[str], comment: str,
        entry_chains: Sequence[tuple[str, str, str]] = ()) -> None:
    """An attachment's ADD: one nft transaction made by ``script_for(stale, declare)``, where ``stale`` are the
    rules a previous ADD of the same attachment left (from its record; from ``listed_stale()``, the listing, when
    the record is pending or void, or a deletion by handle is refused). Records the new rules' handles.

    ``declare``: whether the script re-declares the layout's shared part (table, chains, the flushed and refilled
    ``entry_chains``) as upstream's does on every ADD. Re-declaring an existing chain or flushing one makes the
    kernel free the old objects after an RCU grace period, and the ``nft`` that committed it then waits ~10 ms
    when it closes its socket (the kernel flushes that deferred work on NETLINK_URELEASE); a commit that only
    adds rules does not. So the shared part is declared only when :func:`_declared_intact` cannot show that the
    last full script's entry rules are still there unchanged (read over nfnetlink per chain, no exec); its
    handles are recorded after each full script. A short script that the kernel refuses (a chain of ours
    deleted meanwhile) drops that record, and the next attempt declares.

    The handles come from the kernel's notifications of the commit (:func:`runner.nft_watch`), read while our
    suite lock is held: ``nft -f`` as without records, and no read of the ruleset, whatever the number of
    pods. A commit by someone else meanwhile (the Go plugins, kube-proxy) only adds notifications, which are
    told apart by table, chain and comment (this attachment's own). If the notifications show other than the
    rules the script adds (lost to a full socket buffer, or a rule deleted meanwhile), the record stays
    ``pending`` and the DEL lists; if no
    socket can be watched, ``nft -e -a`` echoes the handles as before."""
    record = load(key)
    output: dict[str, Any] = {}
    shared_key = _shared_key(script_for) if entry_chains else None
    declaring = {"now": True}

    def build() -> str:
        declaring["now"] = shared_key is None or not _declared_intact(shared_key, entry_chains)
        return script_for(stale(), declaring["now"])

    def stale() -> list[RuleRef]:
        if record is None:
            return []  # never added here (a Go ADD of the same ID without a DEL is not looked for)
        valid = None if record.pending else record.valid_rules(runner.nft_table_handles())
        return valid if valid is not None else listed_stale()  # pending, or a table made again: list

    def apply(script: str) -> Any:
        save(key, Record({}, [], pending=True))
        watch = runner.nft_watch()
        rules: Optional[list[RuleRef]] = None
        if watch is None:
            proc = runner.run(["nft", "-e", "-a", "-f", "-"], script)
            if proc.returncode == 0:
                rules, output["tables"] = echoed(proc.text(), chains, comment)[1], runner.nft_table_handles()
        else:
            with watch:
                proc = runner.nft_apply(script)
                if proc.returncode == 0:
                    # The tables first: a table deleted after this read shows in the notifications read next
                    # (a DELRULE per rule), and the count of our rules then differs.
                    output["tables"] = runner.nft_table_handles()
                    rules = runner.nft_rules_added(watch, chains, comment)
        if proc.returncode == 0:
            output["rules"] = rules if rules is not None and len(rules) == expected_rules(script, chains,
                                                                                          comment) else None
        if shared_key is not None:
            _record_declared(shared_key, entry_chains, proc.returncode == 0, declaring["now"])
        return proc

    try:
        runner.transact(what, build, apply, runner.NFT_LOCK)
    except runner.NetfilterError:
        if record is None or record.pending:
            raise
        record = Record({}, [], pending=True)  # a recorded rule went meanwhile: find them by listing
        runner.transact(what, build, apply, runner.NFT_LOCK)
    rules: Optional[list[RuleRef]] = output.get("rules")
    if rules is None:
        log.debug("%s: the new rules' handles are not known, the record stays pending", what)
        return  # the pending record: the next DEL or ADD finds the rules by listing
    tables = {f"{f} {t}": h for (f, t), h in output["tables"].items()}
    save(key, Record({name: tables[name] for name in {f"{f} {t}" for f, t, _, _ in rules} if name in tables}, rules))


def _record_declared(key: tuple[str, str], entry_chains: Sequence[tuple[str, str, str]], applied: bool,
                     declared: bool) -> None:
    """After a commit (under the suite lock): a full script's entry rules become the shared record; a short
    script the kernel refused drops it, so that the retry declares."""
    if not declared:
        if not applied:
            remove(key)
        return
    if not applied:
        return
    try:
        rules = _entry_rules(entry_chains)
        tables = runner.nft_table_handles()
    except (OSError, runner.NetfilterError):
        remove(key)
        return
    save(key, Record({f"{f} {t}": tables[(f, t)] for f, t, _ in entry_chains if (f, t) in tables}, rules))


def delete(what: str, key: Sequence[str], listing_script: Callable[[], Optional[str]]) -> None:
    """An attachment's DEL: by the handles of its record (one exec, whatever the number of pods), else, or when
    the kernel refuses that, by ``listing_script()`` (the listing, as before records)."""
    record = load(key)
    if record is not None and not record.pending:
        with runner.suite_lock(runner.NFT_LOCK):
            valid = record.valid_rules(runner.nft_table_handles())
            done = valid is not None and (not valid or runner.nft_apply("\n".join(delete_lines(valid)) + "\n")
                                          .returncode == 0)
        if done:
            remove(key)
            return
    # No record (the Go plugins' rules), a pending one, a table made again, or a refused deletion: by comment.
    runner.transact(what, listing_script, runner.nft_apply, runner.NFT_LOCK)
    remove(key)


def forget_namespace() -> None:
    """Remove every record of the current network namespace: for whoever deletes a namespace without DELs first
    (the bench's lab), since records of a gone namespace would never be read again."""
    folder = _netns_folder()
    if folder is None:
        return
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return
    for name in names:
        try:
            os.unlink(os.path.join(folder, name))
        except FileNotFoundError:
            pass
    try:
        os.rmdir(folder)
    except OSError:
        pass
