"""The one error type of the suite and its well-known codes.

Library code raises :class:`CNIError`; only :mod:`cni_common.skel` turns it into the error JSON on stdout.
Anything else that escapes a verb handler is reported as code 999 (internal), the way the Go skel does.
"""

from __future__ import annotations

import enum

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~4 ms per plugin process)
if TYPE_CHECKING:
    from typing import Any, Callable


class ErrorCode(enum.IntEnum):
    """Codes from the CNI spec (1-99 are reserved for these) plus the Go libraries' 999."""

    INCOMPATIBLE_VERSION = 1
    UNSUPPORTED_FIELD = 2
    UNKNOWN_CONTAINER = 3
    INVALID_ENV = 4
    IO_FAILURE = 5
    DECODING_FAILURE = 6
    INVALID_CONFIG = 7
    INVALID_NETNS = 8
    TRY_AGAIN_LATER = 11
    NOT_AVAILABLE = 50
    LIMITED_CONNECTIVITY = 51
    INTERNAL = 999


class PluginCode(enum.IntEnum):
    """Plugin-specific codes (the spec leaves 100 and above to plugins)."""

    IPAM_EXHAUSTED = 100
    ADDRESS_UNAVAILABLE = 101
    LINK_FAILURE = 102
    NETFILTER_FAILURE = 103
    DELEGATE_NOT_FOUND = 104
    STORE_FAILURE = 105
    #: CHECK found the attachment differs from its prevResult. Upstream answers 999 here, but 999 says "a bug of
    #: the plugin" and this is the container's state, so the runtime gets a code of its own (same verdict).
    CHECK_FAILED = 106


class CNIError(Exception):
    """A failure the runtime should see as a CNI error object (code, msg, details)."""

    def __init__(self, code: int, msg: str, details: str = "") -> None:
        super().__init__(msg)
        self.code = int(code)
        self.msg = msg
        self.details = details

    def to_dict(self, cni_version: str) -> dict[str, Any]:
        """The error object as the spec defines it; ``details`` is left out when empty, as Go does."""
        out: dict[str, Any] = {"cniVersion": cni_version, "code": self.code, "msg": self.msg}
        if self.details:
            out["details"] = self.details
        return out

    def __str__(self) -> str:
        return f"{self.msg}; {self.details}" if self.details else self.msg


class BestEffort:
    """Runs the steps of a best-effort verb (DEL, GC) to the end and reports every failure together.

    The spec wants DEL and GC to do all they can: one step failing must not stop the next. Each step runs as
    ``with steps: do_it()``; a :class:`CNIError` is recorded and swallowed, anything else (a bug) propagates.
    """

    def __init__(self) -> None:
        self.failures: list[str] = []
        self.first: CNIError | None = None

    def __enter__(self) -> "BestEffort":
        return self

    def __exit__(self, kind: object, exc: object, tb: object) -> bool:
        if isinstance(exc, CNIError):
            self.failures.append(str(exc))
            self.first = self.first or exc
            return True
        return False

    def raise_if_failed(self, msg: str) -> None:
        """Every recorded failure in ``details``, under the code of the first: the code says whose fault it is
        (a delegate's code 7 for its config, 4 for a missing ``CNI_PATH``), and 999 would blame our code for
        the runtime's or the operator's mistake."""
        if self.first is not None:
            raise CNIError(self.first.code, f"{msg}: {self.first.msg}", "; ".join(self.failures))


def invalid_config(msg: str, details: str = "") -> CNIError:
    """The operator's config is wrong (code 7); ``msg`` names the key."""
    return CNIError(ErrorCode.INVALID_CONFIG, msg, details)


def check_failed(msg: str) -> CNIError:
    """CHECK found the node differing from the ADD's result (code 106)."""
    return CNIError(PluginCode.CHECK_FAILED, msg)


def undo_quietly(fn: Callable[..., Any], *args: Any) -> None:
    """Run a rollback step of a failed ADD: its own failure is logged, the error that caused the rollback is
    what the runtime gets."""
    try:
        fn(*args)
    except Exception as exc:  # noqa: BLE001 - a rollback step must not mask the original error
        from .log import get_logger

        get_logger(__name__).warning("rollback step %s failed: %s", getattr(fn, "__name__", fn), exc)
