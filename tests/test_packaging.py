"""The wheel carries everything an installed RLHF Studio reads: code, templates, static files, migrations.

The wheel is built the way `scripts/check_wheel` builds it (sdist, then the wheel from the sdist), and
its file list compared with the source tree. `scripts/check_wheel` installs and boots it.
"""

from __future__ import annotations

import configparser
import subprocess
import sys
import zipfile
from email.parser import HeaderParser
from pathlib import Path

import pytest

from app import resources

ROOT = Path(__file__).resolve().parents[1]
BUNDLE = "app/_bundle"


def _source_files(folder: str, pattern: str = "*") -> set[str]:
    return {
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / folder).rglob(pattern)
        if path.is_file() and "__pycache__" not in path.parts
    }


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    dist = tmp_path_factory.mktemp("dist")
    build_sdist = "import sys; from setuptools import build_meta; build_meta.build_sdist(sys.argv[1])"
    subprocess.run([sys.executable, "-c", build_sdist, str(dist)], cwd=ROOT, check=True, capture_output=True)
    (sdist,) = dist.glob("*.tar.gz")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation"]
        + ["--wheel-dir", str(dist), str(sdist)],
        check=True,
        capture_output=True,
    )
    (built,) = dist.glob("*.whl")
    with zipfile.ZipFile(built) as archive:
        yield archive


def test_the_wheel_carries_templates_static_files_and_migrations(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    for folder in ("templates", "static", "migrations"):
        expected = {f"{BUNDLE}/{name}" for name in _source_files(folder)}
        assert expected, folder
        assert expected <= names, f"missing from the wheel: {sorted(expected - names)}"
    assert f"{BUNDLE}/alembic.ini" in names
    assert f"{BUNDLE}/templates/login.html" in names
    assert f"{BUNDLE}/migrations/env.py" in names


def test_the_bundle_holds_nothing_else(wheel: zipfile.ZipFile) -> None:
    bundled = {name for name in wheel.namelist() if name.startswith(f"{BUNDLE}/")}
    folders = {f"{BUNDLE}/{folder}/" for folder in ("templates", "static", "migrations")}
    strays = {name for name in bundled if not name.startswith(tuple(folders))}
    assert strays == {f"{BUNDLE}/alembic.ini"}
    assert not [name for name in wheel.namelist() if "__pycache__" in name or name.endswith(".pyc")]


def test_the_wheel_carries_every_module_and_the_demo_data(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    expected = _source_files("app", "*.py") | _source_files("worker", "*.py")
    expected |= _source_files("app/demo", "*.jsonl")
    assert expected <= names, f"missing from the wheel: {sorted(expected - names)}"


def test_the_bundled_alembic_config_finds_the_bundled_migrations(wheel: zipfile.ZipFile) -> None:
    ini = configparser.ConfigParser(interpolation=None)
    ini.read_string(wheel.read(f"{BUNDLE}/alembic.ini").decode())
    assert ini["alembic"]["script_location"] == "%(here)s/migrations"


def test_torch_is_needed_by_the_train_extra_only(wheel: zipfile.ZipFile) -> None:
    (metadata,) = [name for name in wheel.namelist() if name.endswith(".dist-info/METADATA")]
    requires = HeaderParser().parsestr(wheel.read(metadata).decode()).get_all("Requires-Dist") or []
    torch = [line for line in requires if line.split(";")[0].strip().startswith("torch")]
    assert torch, requires
    assert all("extra ==" in line and "train" in line for line in torch), torch


def test_a_checkout_reads_the_folders_at_the_repository_root() -> None:
    assert resources.ROOT_DIR == ROOT
    assert (resources.TEMPLATES_DIR / "login.html").is_file()
    assert (resources.STATIC_DIR / "css" / "app.css").is_file()
    assert resources.ALEMBIC_INI.is_file()
    assert (resources.DEMO_DIR / "demo_pairs.jsonl").is_file()
