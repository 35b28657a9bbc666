"""Refund a sale (by reference or from the list) and void the last sale; both need a supervisor.

Everything a refund or a void checks but the supervisor's PIN is checked first (already voided,
more than what is left, out of the window...): the supervisor is only asked when the refund or
void can happen. After a refund the form starts again empty, so F9 cannot refund the same sale a
second time by accident; after a void the screen shows the sale as voided and offers nothing."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Input, Label, Static

from terminal.core.money import Money, parse_amount
from terminal.errors import MoneyError
from terminal.receipts import method_name, short_reference
from terminal.tui.screens.base import BaseScreen, screen_work


class RefundScreen(BaseScreen):
    TITLE_KEY = "refund.title"
    BINDINGS = [Binding("f9", "confirm", "action.confirm"), Binding("escape", "back", "action.back")]

    def __init__(self, reference: str = "") -> None:
        super().__init__()
        self.reference = reference
        self.original: Any = None

    def body(self) -> ComposeResult:
        with Vertical(classes="form"):
            yield Label(self.tr("refund.reference"))
            yield Input(value=self.reference, max_length=40, placeholder=self.tr("refund.reference_hint"),
                        id="reference")
            yield Static(self.tr("refund.lookup"), id="original", classes="hint")
            yield Label(self.tr("refund.amount"))
            yield Input(max_length=16, restrict=r"[0-9.,]*", id="amount")
            yield Static("", id="message", classes="message")

    def on_mount(self) -> None:
        if self.reference:
            self.lookup(self.reference)
            self.query_one("#amount", Input).focus()
        else:
            self.query_one("#reference", Input).focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "reference" and self.original is not None and event.value.strip() != self.reference:
            self.original = None  # another reference: looked up again before anything is refunded
            self.query_one("#original", Static).update(self.tr("refund.lookup"))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "reference":
            self.say("")
            self.lookup(event.value)
            self.query_one("#amount", Input).focus()
        else:
            self.action_confirm()

    @screen_work(exclusive=True, group="refund")
    def lookup(self, reference: str) -> None:
        service = self.wp.service
        found = service.lookup(reference) if reference.strip() else None
        sale = service.original_sale(found.row) if found is not None and found.row is not None else None
        self.from_worker(self.show_original, reference.strip(), found, sale)

    def show_original(self, reference: str, found: Any, sale: Any) -> None:
        target = self.query_one("#original", Static)
        self.original = found.row if found is not None else None
        self.reference = reference
        if found is None:
            target.update(self.tr("refund.lookup"))
            return
        if found.row is None:
            if found.problem == "ambiguous_reference":
                choices = ", ".join(f"{short_reference(r)} {self.money(r.amount)}" for r in found.candidates[:4])
                target.update(self.tr("refund.ambiguous", reference=reference, choices=choices))
            else:
                target.update(self.tr("problem.not_found"))
            return
        row = found.row
        text = self.tr("refund.original", reference=short_reference(row), amount=self.money(row.amount),
                       time=self.local_time(row.created_at), method=row.masked_pan or method_name(self.wp.locale,
                                                                                                   row.method))
        if sale.voided:
            state = self.tr("refund.voided")
        else:
            state = self.tr("refund.refundable", amount=self.money(sale.amount - sale.refunded))
        target.update(f"{text}\n{state}")

    def amount(self) -> Money | bool | None:
        """The amount typed (None: all that is left; False: not an amount, said why)."""
        text = self.query_one("#amount", Input).value.strip()
        if not text:
            return None
        display = self.wp.service.config.display
        try:
            return parse_amount(text, self.wp.service.currency, decimal_sep=display.decimal_separator,
                                group_sep=display.group_separator)
        except MoneyError as exc:
            self.say(str(exc))
            return False

    def holds_keys_after(self, key: str) -> bool:
        """F9 asks a supervisor's id and PIN (once the refund is possible): typed right after it, they
        wait for the prompt, or come back here when there is none."""
        return key == "f9" or super().holds_keys_after(key)

    def action_confirm(self) -> None:
        reference = self.query_one("#reference", Input).value.strip()
        if not reference:
            self.release_keys_to(self.query_one("#reference", Input))
            return
        amount = self.amount()
        if amount is False:
            self.wp.release_keys()
            return
        self.precheck(reference, amount)

    @screen_work(exclusive=True, group="refund")
    def precheck(self, reference: str, amount: Any) -> None:
        check = self.wp.service.refund_check(reference, amount)
        self.from_worker(self.checked, reference, amount, check)

    def checked(self, reference: str, amount: Any, check: Any) -> None:
        from terminal.tui.screens.dialogs import SupervisorPrompt

        if not check.ok:  # no supervisor PIN for a refund that cannot happen
            self.say(self.tr("refund.refused", why=check.message(self.wp.locale)))
            self.wp.release_keys()
            return

        def approved(answer: tuple[str, str] | None) -> None:
            if answer is not None:
                self.run_refund(reference, amount, *answer)

        hint = self.tr("refund.approve", amount=self.money(amount if amount is not None else check.refundable),
                       reference=short_reference(check.row))
        self.app.push_screen(self.wp.make(SupervisorPrompt, "supervisor.title", hint), approved)

    @screen_work(exclusive=True, group="refund")
    def run_refund(self, reference: str, amount: Any, supervisor: str, pin: str) -> None:
        operator = self.wp.operator.id if self.wp.operator else None
        result = self.wp.service.refund(reference, amount, operator=operator, supervisor_id=supervisor,
                                        supervisor_pin=pin)
        self.from_worker(self.done, result, when_gone=self.done_after_leaving)

    def outcome_text(self, result: Any) -> str:
        if result.ok:
            return self.tr("refund.done", amount=self.money(result.row.amount),
                           reference=short_reference(result.row, with_date=False),
                           left=self.money(result.refundable))
        return self.tr("refund.refused", why=result.message(self.wp.locale))

    def done(self, result: Any) -> None:
        self.say(self.outcome_text(result))
        if result.ok:
            # a new form: F9 now refunds nothing until another sale is looked up
            self.original = None
            self.reference = ""
            self.query_one("#reference", Input).value = ""
            self.query_one("#amount", Input).value = ""
            self.query_one("#original", Static).update(self.tr("refund.lookup"))
            self.query_one("#reference", Input).focus()
            self.wp.ring()

    def done_after_leaving(self, result: Any) -> None:
        """The cashier left the screen while the refund was being decided: tell them how it went."""
        self.app.notify(self.outcome_text(result), severity="information" if result.ok else "warning", timeout=30)



class VoidScreen(BaseScreen):
    TITLE_KEY = "void.title"
    BINDINGS = [Binding("f9", "confirm", "action.confirm"), Binding("escape", "back", "action.back")]

    def __init__(self) -> None:
        super().__init__()
        self.check: Any = None  # what a void of the last sale would find (BackOfficeResult)

    def body(self) -> ComposeResult:
        with Vertical(classes="form"):
            yield Static("", id="last")
            yield Static("", id="hint", classes="hint")
            yield Static("", id="message", classes="message")

    def on_mount(self) -> None:
        self.load()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "confirm":
            return self.check is not None and self.check.ok
        return super().check_action(action, parameters)

    @screen_work(exclusive=True, group="void")
    def load(self) -> None:
        self.from_worker(self.show_last, self.wp.service.void_check())

    def show_last(self, check: Any) -> None:
        self.check = check
        self.refresh_bindings()
        last = self.query_one("#last", Static)
        hint = self.query_one("#hint", Static)
        row = check.row
        if row is None:
            last.update(self.tr("void.none"))
            hint.update("")
            return
        last.update(self.tr("void.last", reference=short_reference(row), amount=self.money(row.amount),
                            time=self.local_time(row.created_at),
                            method=row.masked_pan or method_name(self.wp.locale, row.method)))
        if check.ok:
            hint.update(self.tr("void.confirm"))
        elif "original_voided" in check.problems:
            hint.update(self.tr("void.already"))
        else:
            hint.update(self.tr("void.refused", why=check.message(self.wp.locale)))

    def holds_keys_after(self, key: str) -> bool:
        """F9 asks a supervisor's id and PIN: typed right after it, they wait for the prompt."""
        return (key == "f9" and self.check is not None and self.check.ok) or super().holds_keys_after(key)

    def action_confirm(self) -> None:
        if self.check is not None and self.check.ok:
            self.precheck()

    @screen_work(exclusive=True, group="void")
    def precheck(self) -> None:
        self.from_worker(self.checked, self.wp.service.void_check())

    def checked(self, check: Any) -> None:
        from terminal.tui.screens.dialogs import SupervisorPrompt

        if not check.ok:  # voided meanwhile, a newer sale...: no supervisor PIN for nothing
            self.show_last(check)
            self.wp.release_keys()
            return

        def approved(answer: tuple[str, str] | None) -> None:
            if answer is not None:
                self.run_void(*answer)

        hint = self.tr("void.approve", amount=self.money(check.row.amount), reference=short_reference(check.row))
        self.app.push_screen(self.wp.make(SupervisorPrompt, "supervisor.title", hint), approved)

    @screen_work(exclusive=True, group="void")
    def run_void(self, supervisor: str, pin: str) -> None:
        operator = self.wp.operator.id if self.wp.operator else None
        result = self.wp.service.void_last(operator=operator, supervisor_id=supervisor, supervisor_pin=pin)
        self.from_worker(self.done, result, when_gone=self.done_after_leaving)

    def outcome_text(self, result: Any) -> str:
        if result.ok:
            return self.tr("void.done", amount=self.money(result.row.amount))
        return self.tr("void.refused", why=result.message(self.wp.locale))

    def done(self, result: Any) -> None:
        self.query_one("#message", Static).update(self.outcome_text(result))
        if result.ok:
            self.wp.ring()
        self.load()  # the sale now shows as voided, and F9 offers nothing

    def done_after_leaving(self, result: Any) -> None:
        """The cashier left the screen while the void was being decided: tell them how it went."""
        self.app.notify(self.outcome_text(result), severity="information" if result.ok else "warning", timeout=30)

