"""The package's public surface: version, exported modules, the documented test command."""

import re
from importlib import metadata
from pathlib import Path

import funcmtl as fm

ROOT = Path(__file__).resolve().parent.parent


def test_version_is_the_installed_distributions():
    assert fm.__version__ == metadata.version("funcmtl")


def test_every_subpackage_is_reachable_as_an_attribute():
    import funcmtl.distributed

    assert fm.distributed is funcmtl.distributed
    assert set(fm.__all__) >= {"distributed", "aggregators", "weightings", "optim", "ensemble"}


def test_ci_runs_the_readme_test_command_verbatim():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    commands = re.findall(r"```bash\n(.*?)\n```", readme, flags=re.S)
    test_command = next(c for c in commands if "pytest" in c)
    assert "ruff check ." in test_command
    assert test_command in ci


def test_the_wheel_lists_every_package_and_no_top_level_cli():
    tomllib = __import__("pytest").importorskip("tomllib")  # Python 3.11+
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for folder in ("funcmtl", "cli")
        for init in (ROOT / folder).rglob("__init__.py")
    }
    found = {"funcmtl_cli" + name[3:] if name.startswith("cli") else name for name in found}
    assert set(config["packages"]) == found
    assert config["package-dir"] == {"funcmtl_cli": "cli"}
    assert not any(name == "cli" or name.startswith("cli.") for name in config["packages"])


def test_no_public_name_shadows_a_submodule() -> None:
    """``fm.X`` is the module ``funcmtl.X`` whenever that module exists (no function bound
    over a module of the same name, which made imports depend on their order)."""
    import importlib
    import pkgutil

    import funcmtl as fm

    for info in pkgutil.iter_modules(fm.__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"funcmtl.{info.name}")
        assert getattr(fm, info.name) is module, info.name
