"""The Textual user interface (a view over terminal.service)."""
