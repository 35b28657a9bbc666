"""Without the shared vectors their tests are skipped; under WALLETPOS_REQUIRE_VECTORS=1 (scripts/test)
they fail. Checked with a real pytest run in a subprocess, against a vectors directory that does not
exist, over tests of each kind: a whole module that reads the vectors, a parameter list built from
them, plain tests and a fixture that need them, and one test that does not need them at all."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NEEDING = [
    "tests/cards/test_public_vectors.py",  # 7 tests, 3 of them parametrized from the vectors
    "tests/qr/test_qrpay.py::test_every_valid_merchant_vector_round_trips",
    "tests/qr/test_qrpay.py::test_emvco_specification_sample_fields",
    "tests/cards/test_virtual_cards.py::test_replay_cards_work_through_the_sim_reader",
]
NOT_NEEDING = "tests/qr/test_qrpay.py::test_crc_is_ccitt_false"

pytestmark = pytest.mark.timeout(300)


def run_without_vectors(tmp_path: Path, *, required: bool) -> tuple[int, dict[str, int], str]:
    env = {k: v for k, v in os.environ.items() if k not in ("WALLETPOS_VECTORS", "WALLETPOS_REQUIRE_VECTORS")}
    env["WALLETPOS_VECTORS"] = str(tmp_path / "no-vectors-here")
    if required:
        env["WALLETPOS_REQUIRE_VECTORS"] = "1"
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *NEEDING, NOT_NEEDING],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    counts = {word: int(n) for n, word in re.findall(r"(\d+) (passed|skipped|failed|errors?)\b", summary)}
    counts["errors"] = counts.pop("error", 0) + counts.get("errors", 0)
    return done.returncode, counts, done.stdout + done.stderr


def test_missing_vectors_skip_their_tests(tmp_path: Path) -> None:
    code, counts, output = run_without_vectors(tmp_path, required=False)
    assert code == 0, output
    assert counts == {"passed": 1, "skipped": 10, "errors": 0}, output
    assert "shared vectors not found" in output


def test_missing_vectors_fail_their_tests_under_the_switch(tmp_path: Path) -> None:
    code, counts, output = run_without_vectors(tmp_path, required=True)
    assert code == 1, output
    assert counts == {"passed": 1, "errors": 10}, output  # each fails in setup, in the `shared_vectors` fixture
    assert "WALLETPOS_REQUIRE_VECTORS=1 requires them" in output
