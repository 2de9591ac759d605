"""``python -m edge`` runs the ``spike-edge`` command line."""

from edge.cli import main

main()
