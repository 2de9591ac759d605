"""``python -m host`` runs the ``spike-host`` command line."""

from host.cli import main

main()
