"""``python -m trio_dispatch``: the ``trio-dispatch`` command-line tool."""

from ._cli import main

if __name__ == "__main__":
    main()
