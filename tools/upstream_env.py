"""Create or update ``.venv-upstream``: the reference asyncio libraries, apart from ours.

``frequenz-client-dispatch`` (grpcio) caps ``python-dateutil<3``, which clashes with our
environment, so the interop tests and the benchmarks run it in a venv of its own, in a
subprocess. This module makes that venv at ``<repo>/.venv-upstream`` (gitignored) with
the pinned versions below, using only the standard library.

It is idempotent: a marker file inside the venv records the pins and the Python that
installed them; when it matches, nothing is run. Otherwise pip (re)installs the pins
into the existing venv. A lock file serializes concurrent callers.

Usage::

    python tools/upstream_env.py          # create/update, print the interpreter's path

    from tools.upstream_env import ensure_upstream_python
    python = ensure_upstream_python()     # Path to .venv-upstream/bin/python
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import venv
from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).resolve().parent.parent
VENV_DIR: Final = ROOT / ".venv-upstream"

PINS: Final = (
    "frequenz-client-dispatch==1.1.1",
    # The dispatcher of the same family, for benchmarks; 1.0.4 is the newest release
    # that pip resolves together with frequenz-client-dispatch 1.1.1.
    "frequenz-dispatch==1.0.4",
)

_MARKER: Final = ".trio-dispatch-pins"
_LOCK: Final = ".trio-dispatch-lock"
PIP_TIMEOUT_S: Final = 900


class UpstreamEnvError(RuntimeError):
    """The upstream venv could not be created or installed."""


def _python(venv_dir: Path) -> Path:
    return venv_dir / "bin" / "python"


def _marker_text() -> str:
    version = ".".join(map(str, sys.version_info[:3]))
    return "\n".join([f"python {version}", *PINS]) + "\n"


def _is_current(venv_dir: Path) -> bool:
    marker = venv_dir / _MARKER
    try:
        return _python(venv_dir).exists() and marker.read_text() == _marker_text()
    except OSError:
        return False


def _run(args: list[str], what: str) -> None:
    try:
        done = subprocess.run(
            args,
            capture_output=True,
            text=True,
            timeout=PIP_TIMEOUT_S,
            check=False,
            env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UpstreamEnvError(f"{what} failed: {exc}") from exc
    if done.returncode != 0:
        raise UpstreamEnvError(
            f"{what} failed with exit code {done.returncode}:\n"
            f"$ {' '.join(args)}\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
        )


def ensure_upstream_python(venv_dir: Path = VENV_DIR) -> Path:
    """Return the upstream venv's interpreter, creating or updating the venv first.

    Raises `UpstreamEnvError` with pip's output when the venv cannot be made.
    """
    if _is_current(venv_dir):
        return _python(venv_dir)
    venv_dir.mkdir(parents=True, exist_ok=True)
    with open(venv_dir / _LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _is_current(venv_dir):  # someone else finished it while we waited
            return _python(venv_dir)
        (venv_dir / _MARKER).unlink(missing_ok=True)
        if not _python(venv_dir).exists():
            try:
                venv.EnvBuilder(with_pip=True, symlinks=True).create(venv_dir)
            except (OSError, subprocess.CalledProcessError) as exc:
                raise UpstreamEnvError(f"creating the venv {venv_dir} failed: {exc}") from exc
        _run(
            [str(_python(venv_dir)), "-m", "pip", "install", "--quiet", *PINS],
            f"installing {', '.join(PINS)} into {venv_dir}",
        )
        (venv_dir / _MARKER).write_text(_marker_text())
    return _python(venv_dir)


def main() -> int:
    try:
        print(ensure_upstream_python())
    except UpstreamEnvError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
