"""The import rules of docs/architecture.md, read from the source: layers stay layers as the code grows."""

from __future__ import annotations

import ast
from functools import cache
from itertools import combinations
from pathlib import Path

import pytest

pytestmark = pytest.mark.no_store

PACKAGE = Path(__file__).resolve().parent.parent / "chat_api"
# Not domains: the shared tier, the HTTP glue and the store's plumbing.
TIERS = {"common", "http", "store"}
# Modules that hold rules or data shapes, never HTTP.
SANIC_FREE_KINDS = {"service", "schemas", "models", "repository"}
SANIC = ("sanic", "sanic_ext", "sanic_routing", "sanic_testing")
# The composition root: it assembles every package's blueprint, so it alone imports them all.
COMPOSITION_ROOT = "chat_api.app"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in PACKAGE.rglob("*.py")}


@cache
def imports_of(module: str) -> frozenset[str]:
    """Every module `module` imports, by absolute name: `from x import y` is x, and x.y if that is a module."""
    tree = ast.parse(MODULES[module].read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            found.add(node.module)
            found.update(
                f"{node.module}.{alias.name}" for alias in node.names if f"{node.module}.{alias.name}" in MODULES
            )
    return frozenset(found)


def internal_imports(module: str) -> set[str]:
    return {name for name in imports_of(module) if name in MODULES}


def imports_sanic(module: str) -> bool:
    return any(name == root or name.startswith(f"{root}.") for name in imports_of(module) for root in SANIC)


def closure(module: str) -> set[str]:
    """`module` and every chat_api module it imports, directly or not."""
    seen = {module}
    todo = [module]
    while todo:
        for name in internal_imports(todo.pop()):
            if name not in seen:
                seen.add(name)
                todo.append(name)
    return seen


def package_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 else None


def domains() -> set[str]:
    return {package for module in MODULES if (package := package_of(module)) is not None} - TIERS


def test_the_rules_see_the_code() -> None:
    """The checks below read real modules: an empty or misread tree would make them pass vacuously."""
    assert "chat_api.users.routes" in MODULES
    assert "chat_api.http.auth" in internal_imports("chat_api.users.routes")
    assert imports_sanic("chat_api.http.auth")
    assert {"users", "friends", "groups", "messages", "realtime"} <= domains()


def test_no_module_imports_another_packages_routes() -> None:
    offenders = [
        (module, name)
        for module in MODULES
        if module != COMPOSITION_ROOT
        for name in internal_imports(module)
        if name.endswith(".routes") and package_of(name) != package_of(module)
    ]
    assert offenders == []


def test_services_schemas_models_and_repositories_never_reach_sanic() -> None:
    """Not directly, and not through anything they import."""
    offenders = {
        module: sorted(name for name in closure(module) if imports_sanic(name))
        for module in MODULES
        if module.rsplit(".", 1)[-1] in SANIC_FREE_KINDS
    }
    assert {module: found for module, found in offenders.items() if found} == {}


def test_the_shared_tier_imports_no_sanic_and_nothing_above_it() -> None:
    for module in MODULES:
        if package_of(module) == "common":
            assert not imports_sanic(module), module
            assert all(package_of(name) == "common" for name in internal_imports(module)), module


def test_no_two_domain_packages_import_each_other() -> None:
    edges = {
        (package_of(module), package_of(name))
        for module in MODULES
        for name in internal_imports(module)
        if package_of(module) != package_of(name)
    }
    mutual = [(a, b) for a, b in combinations(sorted(domains()), 2) if (a, b) in edges and (b, a) in edges]
    assert mutual == []


def test_each_collection_is_queried_by_its_owner_only() -> None:
    """`get_pymongo_collection()` (the way to a collection's queries) appears only in the owner modules."""
    owners = {
        "chat_api.users.repository",
        "chat_api.friends.repository",
        "chat_api.messages.repository",
        "chat_api.messages.postings",
        "chat_api.groups.repository",
        "chat_api.blocks.repository",
        "chat_api.events.service",
        "chat_api.realtime.presence",
        "chat_api.ratelimit.service",
        "chat_api.files.service",
    }
    users = {module for module, path in MODULES.items() if "get_pymongo_collection()" in path.read_text()}
    assert users - owners == set()
    assert "chat_api.users.repository" in users
