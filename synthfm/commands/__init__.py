"""Subcommands of the ``synthfm`` CLI, one module each."""
