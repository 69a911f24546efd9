"""The ``spnas`` command line: one module per command group, each adding its own subparser."""
