"""``python -m bgcut``: the command line, as the ``bgcut`` console script runs it."""

from bgcut.cli import main

main()
