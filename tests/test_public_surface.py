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


def test_the_built_wheel_installs_funcmtl_and_funcmtl_cli_only(tmp_path):
    """The wheel itself (not only pyproject.toml): no top-level ``cli`` package to collide
    with other projects', and every module of both packages inside."""
    import subprocess
    import sys
    import zipfile

    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path), str(ROOT)],
        capture_output=True, text=True, timeout=240, check=False,
    )
    if result.returncode != 0 and "No module named" in result.stderr + result.stdout:
        __import__("pytest").skip(f"no setuptools to build with: {result.stderr[-200:]}")
    assert result.returncode == 0, result.stderr
    (wheel,) = tmp_path.glob("funcmtl-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"funcmtl", "funcmtl_cli"}
    for folder, package in (("funcmtl", "funcmtl"), ("cli", "funcmtl_cli")):
        for source in (ROOT / folder).rglob("*.py"):
            assert f"{package}/{source.relative_to(ROOT / folder).as_posix()}" in names
    assert "funcmtl/datasets/digits.u8.gz" in names


def test_the_readme_functional_core_runs_as_written():
    readme = (ROOT / "README.md").read_text()
    core = readme.split("## The functional core in one screen", 1)[1]
    code = re.findall(r"```python\n(.*?)\n```", core, flags=re.S)[0]
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 — our own README
    assert namespace["states"].params["0.weight"].shape[0] == 8
    assert namespace["metrics"]["loss"].shape == (8,)
