"""Where the files that are not Python live: page templates, static files, migrations, demo data.

In a source checkout (and an editable install) templates/, static/, migrations/ and alembic.ini are
at the repository root. An installed wheel carries them inside the package, as ``app/_bundle/``
(setup.py maps them there), so an installed RLHF Studio serves and migrates without the source
tree. Both are directories on disk: Jinja2, Starlette's StaticFiles and Alembic read from paths.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

_PACKAGE = Path(str(files("app")))


def _root() -> Path:
    bundled = _PACKAGE / "_bundle"
    return bundled if bundled.is_dir() else _PACKAGE.parent


ROOT_DIR = _root()
"""Holds templates/, static/, migrations/ and alembic.ini: the repository root, or app/_bundle."""
TEMPLATES_DIR = ROOT_DIR / "templates"
STATIC_DIR = ROOT_DIR / "static"
ALEMBIC_INI = ROOT_DIR / "alembic.ini"  # its script_location is the migrations/ folder beside it
DEMO_DIR = _PACKAGE / "demo"  # package data in both layouts
