"""Nobody writes another app's table (DESIGN.md): each table's rows are written by the app
that owns its model, through that app's modules; the others call its services.

Read from the source: a write is a model constructed, a write method on its manager, or
smtpeter_site.db.insert_sql() over it, in a module of an app that does not own the model.
"""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
APPS = ["credentials", "events", "features", "relay", "api", "senders", "smtpeter_site"]
WRITES = {"create", "bulk_create", "update", "delete", "get_or_create", "update_or_create",
          "bulk_update"}


def _foreign_models(tree: ast.Module, app: str) -> set[str]:
    """Names bound in the module to models of other apps (from X.models import Name)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.endswith(".models"):
            owner = node.module.split(".")[0]
            if owner != app and owner in APPS:
                names.update(alias.asname or alias.name for alias in node.names)
    return names


def _writes(path: Path, app: str) -> list[str]:
    tree = ast.parse(path.read_text())
    foreign = _foreign_models(tree, app)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        where = f"{path.relative_to(ROOT)}:{node.lineno}"
        if isinstance(func, ast.Name) and func.id in foreign:
            found.append(f"{where}: {func.id}(...)")
        if isinstance(func, ast.Name) and func.id == "insert_sql" and len(node.args) > 1:
            model = node.args[1]
            if isinstance(model, ast.Name) and model.id in foreign:
                found.append(f"{where}: insert_sql over {model.id}")
        if (isinstance(func, ast.Attribute) and func.attr in WRITES
                and isinstance(func.value, ast.Attribute) and func.value.attr == "objects"
                and isinstance(func.value.value, ast.Name) and func.value.value.id in foreign):
            found.append(f"{where}: {func.value.value.id}.objects.{func.attr}()")
    return found


@pytest.mark.parametrize("app", APPS)
def test_no_app_writes_another_app_s_table(app):
    package = ROOT / app
    if not package.is_dir():
        pytest.skip(f"no {app} package yet")
    found = [w for path in sorted(package.rglob("*.py")) if "migrations" not in path.parts
             for w in _writes(path, app)]
    assert found == [], "\n".join(found)
