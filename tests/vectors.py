"""The shared public vectors in the tests. Where they are is decided in one place,
`drivers.sim.replay.shared_vectors_path`: $WALLETPOS_VECTORS (the directory or its JSON file), else
../shared/vectors beside the repository root.

A test that needs them asks for the `shared_vectors` fixture (tests/conftest.py), or carries
`needs_vectors`. Without the vectors it is skipped, and it fails where WALLETPOS_REQUIRE_VECTORS=1
(scripts/test sets it): a run that must cover them cannot pass without them. A parameter list built
from the vectors at collection goes through `vector_params`, which puts one placeholder in place of
an empty list, so that the test is reported as skipped or failed like the others, never collected
away as an empty parameter set.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from drivers.sim.replay import ENV_VECTORS, load_vector_items, shared_vectors_path

REQUIRE_VECTORS = "WALLETPOS_REQUIRE_VECTORS"

needs_vectors = pytest.mark.usefixtures("shared_vectors")


def vectors_required() -> bool:
    """True where missing vectors are a failure, not a skip (WALLETPOS_REQUIRE_VECTORS=1)."""
    return os.environ.get(REQUIRE_VECTORS, "") not in ("", "0")


def require_vectors() -> Path:
    """The vectors directory; skips the calling test without it, or fails it under the switch."""
    path = shared_vectors_path()
    if path is None:
        where = os.environ.get(ENV_VECTORS) or "../shared/vectors beside the repository"
        reason = f"shared vectors not found in {where} (set {ENV_VECTORS} to their directory)"
        if vectors_required():
            pytest.fail(f"{reason}; {REQUIRE_VECTORS}=1 requires them", pytrace=False)
        pytest.skip(reason)
    return path


def vector_items(kind: str | None = None) -> list[tuple[int, dict[str, Any]]]:
    """(index in the file, item) of every vector item (of `kind`); [] when the vectors are missing."""
    path = shared_vectors_path()
    if path is None:
        return []
    return [(i, item) for i, item in enumerate(load_vector_items(path)) if kind is None or item["kind"] == kind]


def vector_params(params: list[Any], argcount: int) -> list[Any]:
    """`params`, or, when the vectors are missing, one placeholder of `argcount` Nones (id
    "vectors-missing") for a test that uses `shared_vectors`, which then skips or fails it."""
    if shared_vectors_path() is not None:
        return params
    return [pytest.param(*([None] * argcount), id="vectors-missing")]
