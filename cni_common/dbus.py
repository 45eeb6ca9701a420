"""A minimal D-Bus client: method calls with string arguments on the system bus, for the firewall plugin's
firewalld backend.

Upstream talks to firewalld through godbus. The Python bindings (dbus-python, GLib) are C extensions of the
distribution's interpreter, not of the bundle's, and cost tens of milliseconds to import; the wire protocol
a CNI call needs is small: the ``EXTERNAL`` authentication (the caller's uid), ``Hello``, one method call with
string arguments, and a reply of a string, a boolean or an error. That is all this module speaks
(little-endian messages, D-Bus specification 0.41, "Message Protocol").
"""

from __future__ import annotations

import os
import socket
import struct

from .errors import CNIError, ErrorCode

DEFAULT_SYSTEM_BUS = "unix:path=/run/dbus/system_bus_socket"
TIMEOUT_SECONDS = 10.0
_METHOD_CALL, _METHOD_RETURN, _ERROR = 1, 2, 3
# header field codes
_PATH, _INTERFACE, _MEMBER, _ERROR_NAME, _REPLY_SERIAL, _DESTINATION, _SIGNATURE = 1, 2, 3, 4, 5, 6, 8


class DBusError(CNIError):
    """The bus or the called service answered with an error; ``name`` is the D-Bus error name ("" when the bus
    itself could not be reached)."""

    def __init__(self, name: str, msg: str) -> None:
        super().__init__(ErrorCode.TRY_AGAIN_LATER if not name else ErrorCode.INTERNAL, msg)
        self.name = name


def system_bus_path(environ: dict[str, str] | None = None) -> str:
    """The socket of the system bus: ``DBUS_SYSTEM_BUS_ADDRESS`` (its first ``unix:path=``) or the default."""
    address = (environ if environ is not None else os.environ).get("DBUS_SYSTEM_BUS_ADDRESS") or DEFAULT_SYSTEM_BUS
    for candidate in address.split(";"):
        transport, _, params = candidate.partition(":")
        options = dict(p.split("=", 1) for p in params.split(",") if "=" in p)
        if transport == "unix" and "path" in options:
            return options["path"]
    return DEFAULT_SYSTEM_BUS.partition("=")[2]


# ------------------------------------------------------------------------------------------- marshalling

def _pad(buf: bytearray, align: int) -> None:
    buf.extend(b"\0" * (-len(buf) % align))


def _put_string(buf: bytearray, text: str, *, signature: bool = False) -> None:
    data = text.encode()
    if signature:
        buf.append(len(data))
    else:
        _pad(buf, 4)
        buf.extend(struct.pack("<I", len(data)))
    buf.extend(data + b"\0")


def encode_call(serial: int, destination: str, path: str, interface: str, member: str, args: tuple[str, ...]) -> bytes:
    """A METHOD_CALL message whose arguments are all strings."""
    body = bytearray()
    for arg in args:
        _put_string(body, arg)
    fields = bytearray()
    entries: list[tuple[int, str, str]] = [(_PATH, "o", path), (_INTERFACE, "s", interface), (_MEMBER, "s", member),
                                           (_DESTINATION, "s", destination)]
    if args:
        entries.append((_SIGNATURE, "g", "s" * len(args)))
    for code, kind, value in entries:
        _pad(fields, 8)
        fields.append(code)
        _put_string(fields, kind, signature=True)
        _put_string(fields, value, signature=kind == "g")
    head = bytearray(struct.pack("<cBBBII", b"l", _METHOD_CALL, 0, 1, len(body), serial))
    head.extend(struct.pack("<I", len(fields)))
    head.extend(fields)
    _pad(head, 8)
    return bytes(head + body)


def _get_string(data: bytes, off: int, *, signature: bool = False) -> tuple[str, int]:
    if signature:
        length = data[off]
        return data[off + 1:off + 1 + length].decode(), off + 2 + length
    off += -off % 4
    (length,) = struct.unpack_from("<I", data, off)
    return data[off + 4:off + 4 + length].decode(errors="replace"), off + 5 + length


def decode_message(data: bytes) -> tuple[int, dict[int, object], object]:
    """(type, header fields, first body value) of one little-endian message; the body value is a str, a bool
    (signature ``b``), or None when the body is empty or of another type."""
    if data[:1] != b"l":
        raise ValueError("not a little-endian D-Bus message")
    kind = data[1]
    body_len, _, fields_len = struct.unpack_from("<III", data, 4)
    fields: dict[int, object] = {}
    off, end = 16, 16 + fields_len
    while off < end:
        off += -off % 8
        code = data[off]
        sig, off = _get_string(data, off + 1, signature=True)
        if sig in ("s", "o"):
            fields[code], off = _get_string(data, off)
        elif sig == "g":
            fields[code], off = _get_string(data, off, signature=True)
        elif sig == "u":
            off += -off % 4
            (fields[code],) = struct.unpack_from("<I", data, off)
            off += 4
        else:
            raise ValueError(f"unexpected header field type {sig!r}")
    body = end + (-end % 8)
    signature = str(fields.get(_SIGNATURE, ""))
    value: object = None
    if body_len and signature[:1] == "s":
        value = _get_string(data, body)[0]
    elif body_len and signature[:1] == "b":
        value = struct.unpack_from("<I", data, body)[0] != 0
    return kind, fields, value


def message_length(head: bytes) -> int:
    """The full length of a message from its first 16 bytes."""
    body_len, _, fields_len = struct.unpack_from("<III", head, 4)
    header = 16 + fields_len
    return header + (-header % 8) + body_len


# ------------------------------------------------------------------------------------------- the connection

class SystemBus:
    """One authenticated connection to the system bus (``with SystemBus() as bus: bus.call(...)``)."""

    def __init__(self, path: str | None = None) -> None:
        self.path = path or system_bus_path()
        self._serial = 0
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        self._sock.settimeout(TIMEOUT_SECONDS)
        try:
            self._sock.connect(self.path)
            self._authenticate()
            self.call("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus", "Hello")
        except OSError as exc:
            self._sock.close()
            raise DBusError("", f"cannot reach the system bus at {self.path}: {exc.strerror or exc}") from exc
        except DBusError:
            self._sock.close()
            raise

    def __enter__(self) -> SystemBus:
        return self

    def __exit__(self, *exc: object) -> None:
        self._sock.close()

    def _authenticate(self) -> None:
        uid = str(os.getuid()).encode().hex()
        self._sock.sendall(b"\0AUTH EXTERNAL " + uid.encode() + b"\r\n")
        reply = self._read_line()
        if not reply.startswith(b"OK "):
            raise DBusError("", f"the system bus refused authentication: {reply.decode(errors='replace')}")
        self._sock.sendall(b"BEGIN\r\n")

    def _read_line(self) -> bytes:
        line = b""
        while not line.endswith(b"\r\n"):
            chunk = self._sock.recv(1)
            if not chunk:
                raise OSError("connection closed during authentication")
            line += chunk
        return line

    def _read_exact(self, size: int) -> bytes:
        data = bytearray()
        while len(data) < size:
            chunk = self._sock.recv(size - len(data))
            if not chunk:
                raise OSError("connection closed by the bus")
            data.extend(chunk)
        return bytes(data)

    def call(self, destination: str, path: str, interface: str, member: str, *args: str) -> object:
        """Call a method with string arguments; its first reply value (str, bool or None). Signals and other
        messages that arrive meanwhile are skipped. Raises :class:`DBusError` for an error reply."""
        self._serial += 1
        serial = self._serial
        self._sock.sendall(encode_call(serial, destination, path, interface, member, args))
        while True:
            head = self._read_exact(16)
            message = head + self._read_exact(message_length(head) - 16)
            kind, fields, value = decode_message(message)
            if fields.get(_REPLY_SERIAL) != serial:
                continue
            if kind == _ERROR:
                name = str(fields.get(_ERROR_NAME, "org.freedesktop.DBus.Error.Failed"))
                raise DBusError(name, f"{name}: {value if value is not None else ''}")
            return value
