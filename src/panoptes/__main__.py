"""``python -m panoptes``: the same as the ``panoptes`` command."""

from panoptes.cli import main

main()
