"""iptables-save parsing and iptables-restore batch building (pure text handling, no execution).

Rules are compared as token lists in iptables-save's canonical order (``-s``, ``-d``, ``-p``, matches in
the order given, ``-j``), which is the order the rule builders in this package use. Saved rules are deleted
by replaying their saved spec with ``-D``, which works for rules written by any tool.
"""

from __future__ import annotations

from ..record import field, record

Rule = list[str]


@record
class SavedTable:
    """One table as iptables-save printed it: chain names and each chain's rules as token lists."""

    chains: dict[str, list[Rule]] = field(default_factory=dict)

    def has_chain(self, chain: str) -> bool:
        return chain in self.chains

    def rules(self, chain: str) -> list[Rule]:
        return self.chains.get(chain, [])

    def has_rule(self, chain: str, rule: Rule) -> bool:
        return rule in self.rules(chain)

    def jumps_to(self, chain: str, target: str) -> list[Rule]:
        """Rules of ``chain`` whose verdict is ``-j/-g target``."""
        return [r for r in self.rules(chain) if target_of(r) == target]


def target_of(rule: Rule) -> str:
    """The ``-j``/``-g`` target of a rule, or "" when it has none."""
    for i in range(len(rule) - 1):
        if rule[i] in ("-j", "-g", "--jump", "--goto"):
            return rule[i + 1]
    return ""


def option_value(rule: Rule, option: str) -> str:
    """The value following ``option`` in a rule ("" when absent, or when negated with ``!``)."""
    for i in range(len(rule) - 1):
        if rule[i] == option and (i == 0 or rule[i - 1] != "!"):
            return rule[i + 1]
    return ""


def parse_save(text: str, table: str = "nat") -> SavedTable:
    """Parse the ``*table`` section of iptables-save output."""
    import shlex  # only the read-modify-write paths parse a save; the usual ADD and DEL do not

    saved = SavedTable()
    current = ""
    for line in text.splitlines():
        if line.startswith("*"):
            current = line[1:].strip()
        elif current != table or not line or line.startswith("#"):
            continue
        elif line.startswith(":"):
            saved.chains.setdefault(line[1:].split()[0], [])
        elif line.startswith("-A "):
            tokens = shlex.split(line)
            saved.chains.setdefault(tokens[1], []).append(tokens[2:])
    return saved


def quote(token: str) -> str:
    """Quote a token the way iptables-save does, so iptables-restore reads it back unchanged."""
    if token and not any(c in token for c in ' \t"\\\'#'):
        return token
    return '"' + token.replace("\\", "\\\\").replace('"', '\\"') + '"'


@record
class RestoreBatch:
    """Lines of one ``*table`` section; ``render()`` gives the full restore input (or None when empty)."""

    table: str = "nat"
    lines: list[str] = field(default_factory=list)

    def _add(self, op: str, chain: str, rule: Rule) -> None:
        self.lines.append(" ".join([op, chain, *(quote(t) for t in rule)]))

    def new_chain(self, chain: str) -> None:
        """Create a chain that does not exist (``-N`` fails the batch if it does: the state moved)."""
        self.lines.append(f"-N {chain}")

    def declare_flushed(self, chain: str) -> None:
        """Create the chain, or flush it if it exists (restore semantics of a ``:chain`` line)."""
        self.lines.append(f":{chain} - [0:0]")

    def append(self, chain: str, rule: Rule) -> None:
        self._add("-A", chain, rule)

    def insert(self, chain: str, rule: Rule, position: int = 1) -> None:
        self.lines.append(" ".join(["-I", chain, str(position), *(quote(t) for t in rule)]))

    def delete(self, chain: str, rule: Rule) -> None:
        self._add("-D", chain, rule)

    def check(self, chain: str, rule: Rule) -> None:
        """Assert that the rule exists: if not, the whole restore fails and changes nothing."""
        self._add("-C", chain, rule)

    def flush_chain(self, chain: str) -> None:
        self.lines.append(f"-F {chain}")

    def delete_chain(self, chain: str) -> None:
        self.lines.append(f"-X {chain}")

    def render(self) -> str | None:
        if not self.lines:
            return None
        # ":chain" declarations must come before any rule line of the section.
        decl = [ln for ln in self.lines if ln.startswith(":")]
        rest = [ln for ln in self.lines if not ln.startswith(":")]
        return "\n".join([f"*{self.table}", *decl, *rest, "COMMIT", ""])
