"""The attack tests that need a wallet backend use the real sandbox of the backend tests (its own
process, HTTP on 127.0.0.1, wiped before every test) and services wired to it."""

from tests.backend.conftest import enrolled, make_service, sandbox, sandbox_session

__all__ = ["enrolled", "make_service", "sandbox", "sandbox_session"]
