"""The web process stays light: importing the app never loads torch or transformers."""

from __future__ import annotations

import subprocess
import sys


def test_app_imports_without_torch() -> None:
    code = (
        "import sys, app.web.app, app.cli, app.asgi, app.web.routes, app.services.importing;"
        "heavy = sorted(m for m in ('torch', 'transformers', 'trl', 'peft') if m in sys.modules);"
        "print(','.join(heavy))"
    )
    env = {"SECRET_KEY": "x" * 40, "ENVIRONMENT": "test", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.strip() == "", f"app/ imported {out.stdout.strip()}"
