"""The screens of the walletpos TUI, one module each; import a screen from its module.

Nothing is imported here, so that the sign-in screen comes up without loading the others: the app
loads the sale's screens once the sign-in screen is on the terminal (`WalletposApp.on_mount`), and a
screen loads the one it opens (the diagnostics screen only when a technician signs in).
"""
