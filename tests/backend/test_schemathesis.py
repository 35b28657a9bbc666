"""Property-based test of the sandbox backend against docs/openapi.yaml with schemathesis: generated
valid and invalid requests, signed by an enrolled terminal, sent over real HTTP; every answer must
be documented in the file (status, content type, body schema), valid data must be accepted, invalid
data refused with a 4xx, requests without or with a wrong Authorization refused, and nothing may
crash the server."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings

from terminal.backend import signing_session
from tests.backend.conftest import TERMINAL

ROOT = Path(__file__).resolve().parents[2]
VALID_ID = re.compile(r"[A-Za-z0-9]{1,8}")
schema = schemathesis.openapi.from_path(ROOT / "docs" / "openapi.yaml")


class TerminalSignature(requests.auth.AuthBase):
    """The enrolled terminal's request signature, handed to schemathesis as the API's auth (so its
    probes can also send requests without it and check that they are refused)."""

    signer: requests.auth.AuthBase | None = None

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        assert self.signer is not None
        return self.signer(request)


SIGNATURE = TerminalSignature()
schema.auth.set_from_requests(SIGNATURE)


@pytest.fixture
def api(sandbox, enrolled):
    signer_session = signing_session(enrolled.keys, TERMINAL)
    SIGNATURE.signer = signer_session.auth
    session = requests.Session()
    session.trust_env = False
    yield sandbox.url, session
    SIGNATURE.signer = None
    session.close()
    signer_session.close()


@pytest.mark.timeout(300)
@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_sandbox_implements_the_contract(case, api):
    url, session = api
    speak_as_the_terminal(case.body)
    case.call_and_validate(base_url=url, session=session)


def speak_as_the_terminal(body: object) -> None:
    """Generated terminal ids almost never name the signing terminal, so nearly every valid body
    would be refused (401) before reaching the code that answers it. Where a body names a valid
    terminal id (records in a batch too), make it the enrolled one: a valid value for another valid
    value, so an invalid one generated on purpose stays as it is."""
    if not isinstance(body, dict):
        return
    for item in [body, *(body.get("records") if isinstance(body.get("records"), list) else [])]:
        named = item.get("terminal_id") if isinstance(item, dict) else None
        if isinstance(named, str) and VALID_ID.fullmatch(named):
            item["terminal_id"] = TERMINAL
