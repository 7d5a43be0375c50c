"""``python -m synthfm.cli``: the same as the ``synthfm`` command."""

from synthfm.cli import main

main()
