"""The screens of the walletpos TUI."""

from terminal.tui.screens.checkout import CheckoutScreen
from terminal.tui.screens.dayclose import DayCloseScreen
from terminal.tui.screens.diagnostics import DiagnosticsScreen
from terminal.tui.screens.receipt import ReceiptScreen
from terminal.tui.screens.refund import RefundScreen, VoidScreen
from terminal.tui.screens.result import ResultScreen, SaleOutcome
from terminal.tui.screens.signin import SignInScreen
from terminal.tui.screens.transactions import TransactionsScreen

__all__ = [
    "CheckoutScreen", "DayCloseScreen", "DiagnosticsScreen", "ReceiptScreen", "RefundScreen", "ResultScreen",
    "SaleOutcome", "SignInScreen", "TransactionsScreen", "VoidScreen",
]
