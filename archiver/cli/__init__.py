"""The ``archiver`` command: one module per group of subcommands."""
