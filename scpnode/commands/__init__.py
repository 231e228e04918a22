"""One module per ``scpnode`` subcommand; see :mod:`scpnode.cli`."""
