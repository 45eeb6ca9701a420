"""Logging for short-lived plugin processes: stderr, and optionally a file named in the config.

Why not the standard library's ``logging``: importing it costs 10-15 ms (threading, traceback, string,
weakref...), paid on every exec of every plugin, while a plugin needs four levels and a line format. stdout
is never written here: it carries only the CNI JSON.

Usage: ``log = get_logger(__name__)`` then ``log.warning("failed to remove %s: %s", name, err)``.
:func:`configure` is called once by :mod:`cni_common.skel` from the config's ``logLevel``/``logFile`` (or the
``CNI_LOG_LEVEL`` environment variable); until then warnings and errors go to stderr.
"""

from __future__ import annotations

import os
import sys
import time

LEVELS = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40}
_NAMES = {value: name for name, value in LEVELS.items()}


class _Sinks:
    """Where lines go and the minimum level; one per process."""

    level = LEVELS["WARNING"]
    streams: list = [sys.stderr]


def configure(level: str = "", log_file: str = "", stderr=None) -> None:
    """Set the level (unknown names keep WARNING) and the outputs: ``stderr`` plus ``log_file`` if given."""
    _Sinks.level = LEVELS.get(level.upper(), LEVELS["WARNING"])
    for stream in _Sinks.streams[1:]:  # a log file of an earlier configure (an in-process delegate's)
        stream.close()
    _Sinks.streams = [stderr if stderr is not None else sys.stderr]
    if log_file:
        try:
            _Sinks.streams.append(_open_log_file(log_file))
        except OSError as exc:
            _Sinks.streams[0].write(f"cannot open logFile {log_file!r}: {exc}\n")


def _open_log_file(path: str):  # a text stream (annotating it would cost the typing import)
    """Append to ``path`` (created 0600), never through a symlink and never to a FIFO or device: the config
    names the file, an unexpected link in its place must not redirect root's writes elsewhere."""
    import os
    import stat

    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o600)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(f"{path} is not a regular file")
    return open(fd, "a", encoding="utf-8")


class Logger:
    """The subset of :class:`logging.Logger` the suite uses, with the same %-style arguments."""

    def __init__(self, name: str) -> None:
        self.name = name

    def _emit(self, level: int, msg: str, args: tuple) -> None:
        if level < _Sinks.level:
            return
        text = msg % args if args else msg
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
        line = f"{stamp}Z {self.name}[{os.getpid()}] {_NAMES[level]} {text}\n"
        for stream in _Sinks.streams:
            try:
                stream.write(line)
                stream.flush()
            except (OSError, ValueError):
                pass  # a closed or full log must never fail a CNI operation

    def debug(self, msg: str, *args: object) -> None:
        self._emit(LEVELS["DEBUG"], msg, args)

    def info(self, msg: str, *args: object) -> None:
        self._emit(LEVELS["INFO"], msg, args)

    def warning(self, msg: str, *args: object) -> None:
        self._emit(LEVELS["WARNING"], msg, args)

    def error(self, msg: str, *args: object) -> None:
        self._emit(LEVELS["ERROR"], msg, args)

    def is_debug(self) -> bool:
        """Whether debug lines are written (to skip building costly debug text)."""
        return _Sinks.level <= LEVELS["DEBUG"]


def get_logger(name: str) -> Logger:
    return Logger(name)
