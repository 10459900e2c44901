"""``python -m imagerouter``: the same as the ``imagerouter`` command."""

from imagerouter.cli import main

main()
