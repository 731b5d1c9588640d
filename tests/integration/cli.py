"""Running the real ``cronbus`` command in a child process, as a user would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any


def run_cronbus(env: dict[str, str], *argv: str, timeout_s: float = 60.0,
                stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cronbus.agents.cli", *argv], env={**os.environ, **env}, input=stdin,
        capture_output=True, text=True, timeout=timeout_s, check=False,
    )


def cronbus_json(env: dict[str, str], *argv: str) -> Any:
    done = run_cronbus(env, *argv, "--json")
    assert done.returncode == 0, f"cronbus {' '.join(argv)} exited {done.returncode}: {done.stderr}"
    return json.loads(done.stdout)
