"""Developer entry point: the two commands of the README.

    python3 dev.py test    # install into .venv, then lint, type-check, check bindings, run tests
    python3 dev.py demo    # install into .venv, then run the main job

Only the standard library is used here, so it runs on a machine that has nothing but
Python >= 3.11 and pip. Everything else is installed into ``.venv`` beside this file.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / "python"


def _run(*args: str | Path) -> int:
    print("+", " ".join(str(a) for a in args), flush=True)
    child = subprocess.Popen([str(a) for a in args], cwd=ROOT)
    while True:
        try:
            return child.wait()
        except KeyboardInterrupt:
            # Ctrl-C is the child's to handle (the demo stops cleanly on it); pass it on
            # in case it reached only us, and wait for the child to finish.
            if child.poll() is None:
                child.send_signal(signal.SIGINT)


def _install() -> None:
    if not PY.exists():
        venv.EnvBuilder(with_pip=True).create(VENV)
    pip = (PY, "-m", "pip", "install", "--quiet", "--disable-pip-version-check")
    code = _run(*pip, "-e", ".[dev]")
    if code:
        sys.exit(code)


def test(extra: list[str]) -> int:
    """Everything CI checks, in order; stops at the first failure."""
    _install()
    steps: list[tuple[str | Path, ...]] = [
        (PY, "tools/generate_proto.py", "--check"),
        (PY, "-m", "ruff", "check", "."),
        (PY, "-m", "ruff", "format", "--check", "."),
        (PY, "-m", "mypy"),
    ]
    for step in steps:
        code = _run(*step)
        if code:
            return code
    code = _run(PY, "-m", "pytest", *extra)
    if code == 5:  # pytest: no tests were collected
        print("pytest collected no tests: that is a failure", file=sys.stderr)
        return 1
    return code


def demo(extra: list[str]) -> int:
    """The main job: see the README."""
    _install()
    return _run(BIN / "trio-dispatch", "demo", *extra)


def main() -> int:
    """Dispatch to the command named on the command line."""
    commands = {"test": test, "demo": demo}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        print(__doc__)
        return 2
    return commands[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
