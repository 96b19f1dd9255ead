"""The package layout of RLHF Studio's wheel; the rest of the project's metadata is in pyproject.toml.

The web pages, static files and migrations live at the repository root (templates/, static/,
migrations/, alembic.ini), not inside a package. The wheel carries them as the package
``app._bundle``, mapped onto the repository root, so that an installed RLHF Studio can serve and
migrate without the source tree; ``app/resources.py`` finds them in either place. This needs code
rather than pyproject.toml alone because the packages are discovered (``find_packages``) and the
mapped folders added to them.
"""

from setuptools import find_namespace_packages, setup
from setuptools.command.build_py import build_py

BUNDLE = "app._bundle"
FOLDERS = ("templates", "static", "migrations")


def bundle_packages() -> list[str]:
    """The bundle, each mapped folder and each of their subfolders (as namespace packages)."""
    packages = [BUNDLE]
    for folder in FOLDERS:
        subfolders = find_namespace_packages(folder, exclude=["*__pycache__*"])
        packages += [f"{BUNDLE}.{folder}", *(f"{BUNDLE}.{folder}.{sub}" for sub in subfolders)]
    return packages


class BuildPy(build_py):
    """Of the repository root, the bundle takes alembic.ini alone: no Python module (this file)."""

    def find_package_modules(self, package, package_dir):
        if package == BUNDLE:
            return []
        return super().find_package_modules(package, package_dir)


packages = bundle_packages()
setup(
    packages=[*find_namespace_packages(include=["app*", "worker*"], exclude=["*__pycache__*"]), *packages],
    package_dir={BUNDLE: "."},
    package_data={
        "app.demo": ["*.jsonl"],
        BUNDLE: ["alembic.ini"],
        **{package: ["*"] for package in packages if package != BUNDLE},
    },
    exclude_package_data={"": ["*.pyc"]},
    cmdclass={"build_py": BuildPy},
)
