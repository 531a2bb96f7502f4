"""``python -m genaug``: the ``genaug`` command (what a Slurm task runs, with the driver's interpreter)."""

from genaug.cli import main

main()
