"""Subcommands of `walletpos` kept out of cli.py; each module offers `register(subparsers, common)`.

`terminal.cli.Exit` holds the exit codes and `terminal.cli.UsageError` the usage failure."""
