"""The contract file itself: a valid OpenAPI 3.1 document, the sandbox serves exactly its operations,
and its transaction record is exactly the journal's signed record."""

from __future__ import annotations

from pathlib import Path

import schemathesis
import yaml

from sandbox.app import create_app
from sandbox.faults import FaultInjector
from sandbox.store import Store
from terminal.journal import SIGNED_FIELDS

ROOT = Path(__file__).resolve().parents[2]
SPEC = yaml.safe_load((ROOT / "docs" / "openapi.yaml").read_text(encoding="utf-8"))


def test_the_file_is_openapi_3_1_that_schemathesis_accepts():
    assert SPEC["openapi"].startswith("3.1")
    schema = schemathesis.openapi.from_dict(SPEC)  # validates the document
    operations = {f"{op.ok().method.upper()} {op.ok().path}" for op in schema.get_all_operations()}
    assert len(operations) == 14


def test_the_sandbox_serves_exactly_the_operations_of_the_file(tmp_path):
    documented = {(method.upper(), path) for path, item in SPEC["paths"].items() for method in item}
    app = create_app(Store(tmp_path / "b.sqlite3"), FaultInjector(), admin_token="x", spec=SPEC)
    served = set()
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/v1/"):
            path = rule.rule.replace("<", "{").replace(">", "}")
            served |= {(m, path) for m in rule.methods - {"HEAD", "OPTIONS"}}
    assert served == documented


def test_the_record_is_the_journal_signed_record():
    record = SPEC["components"]["schemas"]["TransactionRecord"]
    assert set(record["required"]) == set(record["properties"]) == {*SIGNED_FIELDS, "sealed_card", "row_hash",
                                                                           "signature"}
    assert record["additionalProperties"] is False


def test_every_operation_is_signed_and_documents_its_errors():
    assert SPEC["security"] == [{"terminalSignature": []}]
    for path, item in SPEC["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            assert {"200", "401", "429", "500", "503"} <= set(responses), (method, path)
            assert "security" not in operation, f"{method} {path} must not opt out of request signatures"
