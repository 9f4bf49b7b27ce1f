"""Subcommands of `bgtasks`, one module each; exit codes: 0 ok, 1 failed check, 2 usage or config error,
3 not found, 4 refused (conflict), 130 interrupted."""
