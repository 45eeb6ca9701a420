"""The layering, checked: ``cni_common/`` (the library) imports neither ``plugins/`` nor ``ipam/``, and ``ipam/``
never imports ``plugins/``. Read from the source with ``ast``, so imports inside functions (the lazy ones on the
plugin path) and ``TYPE_CHECKING`` blocks count too, as do ``__import__``/``import_module`` calls with a
literal name. A failure names the file and line of each offending import."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("cni_common", "ipam", "plugins")
#: package -> the top-level packages it must not import.
FORBIDDEN = {"cni_common": ("plugins", "ipam"), "ipam": ("plugins",)}


def _module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(root: Path, path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in ``path``, relative ones resolved."""
    module = _module_name(root, path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            # ``from pkg import mod`` imports pkg.mod when mod is a module: check both spellings
            found += [(node.lineno, base)] + [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
            if name in ("__import__", "import_module"):
                found.append((node.lineno, node.args[0].value))
    return found


def violations(root: Path) -> list[str]:
    """``file:line: <package> imports <module>`` for every import against :data:`FORBIDDEN` under ``root``."""
    found: dict[tuple[str, int], tuple[str, str]] = {}  # one report per import statement: its shortest name
    for package, banned in FORBIDDEN.items():
        for path in sorted((root / package).rglob("*.py")):
            for line, name in imported_names(root, path):
                where = (str(path.relative_to(root)), line)
                if name.split(".")[0] in banned and len(name) < len(found.get(where, ("", name + "."))[1]):
                    found[where] = (package, name)
    return [f"{file}:{line}: {package}/ imports {name} ({name.split('.')[0]}/ is above it)"
            for (file, line), (package, name) in sorted(found.items())]


def test_the_library_imports_no_plugin_and_ipam_no_plugin() -> None:
    assert violations(REPO) == []


def test_the_check_sees_every_kind_of_import(tmp_path: Path) -> None:
    """The rule test is only worth something if it would fail: plant each kind of forbidden import."""
    for package in PACKAGES:
        (tmp_path / package / "sub").mkdir(parents=True)
        (tmp_path / package / "__init__.py").write_text("")
        (tmp_path / package / "sub" / "__init__.py").write_text("")
    (tmp_path / "cni_common" / "a.py").write_text("import plugins.bridge\nfrom . import b\n")
    (tmp_path / "cni_common" / "sub" / "c.py").write_text(
        "def f():\n    from ...plugins import bridge\n    from .. import config\n")
    (tmp_path / "cni_common" / "d.py").write_text("from ipam.host_local import main\n__import__('plugins.vxlan')\n")
    (tmp_path / "ipam" / "e.py").write_text("import cni_common\nfrom plugins import multicall\n")
    (tmp_path / "plugins" / "f.py").write_text("import ipam\nimport cni_common\n")
    assert violations(tmp_path) == [
        "cni_common/a.py:1: cni_common/ imports plugins.bridge (plugins/ is above it)",
        "cni_common/d.py:1: cni_common/ imports ipam.host_local (ipam/ is above it)",
        "cni_common/d.py:2: cni_common/ imports plugins.vxlan (plugins/ is above it)",
        "cni_common/sub/c.py:2: cni_common/ imports plugins (plugins/ is above it)",
        "ipam/e.py:2: ipam/ imports plugins (plugins/ is above it)",
    ]
