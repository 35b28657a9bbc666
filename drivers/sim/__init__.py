"""Simulators that are real drivers: virtual cards on the real PC/SC and nfcpy stacks, an
in-process reader and camera for the demo."""
