"""Spec versions this suite speaks, and how they group into result families.

The families follow the Go library (`pkg/types/{020,040,100}`): conversion is free within a family and has
rules across families (see :mod:`cni_common.types`).
"""

from __future__ import annotations

SUPPORTED_VERSIONS: tuple[str, ...] = ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
LATEST = "1.1.0"


def version_info_json(supported: tuple[str, ...] = SUPPORTED_VERSIONS) -> str:
    """The VERSION answer. Built by hand: this path must not import json, enum or typing (start-up time)."""
    listed = ", ".join(f'"{v}"' for v in supported)
    return f'{{"cniVersion": "{LATEST}", "supportedVersions": [{listed}]}}\n'


def about_line(plugin: str) -> str:
    """What a plugin run by hand (no ``CNI_COMMAND``) prints first, in upstream's words: ``CNI bridge plugin
    v1.2.3``. The suite's version has one source, ``cni_common.__version__`` (setup.cfg reads it too)."""
    from . import __version__

    return f"CNI {plugin} plugin v{__version__}"


LEGACY_FAMILY = frozenset({"", "0.1.0", "0.2.0"})
V04_FAMILY = frozenset({"0.3.0", "0.3.1", "0.4.0"})
V1_FAMILY = frozenset({"1.0.0", "1.1.0"})


def parse(version: str) -> tuple[int, int, int]:
    """Split ``"1.0.0"`` into integers; an empty version means 0.1.0, as the spec says. (The errors module is
    imported on the failure path only: VERSION must not load it, and an import statement run on every call
    costs a relative import's resolution in Python.)"""
    if not version:
        return (0, 1, 0)
    parts = version.split(".")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        from .errors import CNIError, ErrorCode

        raise CNIError(ErrorCode.INCOMPATIBLE_VERSION, f"invalid version {version!r}", "expected MAJOR.MINOR.PATCH")
    return (int(parts[0]), int(parts[1]), int(parts[2]))


def at_least(version: str, minimum: str) -> bool:
    """Whether ``version`` is ``minimum`` or newer."""
    return parse(version) >= parse(minimum)


def family(version: str) -> str:
    """The result family of a version: ``"020"``, ``"040"`` or ``"100"``; CNIError (code 1) when unknown."""
    if version in LEGACY_FAMILY:
        return "020"
    if version in V04_FAMILY:
        return "040"
    if version in V1_FAMILY:
        return "100"
    from .errors import CNIError, ErrorCode

    raise CNIError(ErrorCode.INCOMPATIBLE_VERSION, f"unsupported CNI result version {version!r}",
                   f"supported: {', '.join(SUPPORTED_VERSIONS)}")
