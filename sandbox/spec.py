"""The contract the sandbox implements: docs/openapi.yaml, shipped inside the package as
`sandbox/openapi.yaml` (in the source tree a link to docs/openapi.yaml, the one documented copy; in
a wheel the file itself), read through importlib.resources so that an installed sandbox finds it
wherever it was installed.

Request bodies are validated against the schemas of this file, so the sandbox cannot drift from the
contract: a body the file does not allow is refused with 422 naming the problem.
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import Any

import jsonschema_rs
import yaml

from .errors import Refused

SPEC_RESOURCE = "openapi.yaml"
_MESSAGE_LIMIT = 300  # a schema error quotes the offending value: never echo a whole body back


def spec_text() -> str:
    """The OpenAPI document as shipped with the package."""
    return resources.files(__package__).joinpath(SPEC_RESOURCE).read_text(encoding="utf-8")


@functools.cache
def _loaded() -> dict[str, Any]:
    return yaml.safe_load(spec_text())


def load_spec() -> dict[str, Any]:
    """The OpenAPI document, parsed (one parse per process; callers must not change it)."""
    return _loaded()


class Validators:
    """jsonschema validators for the request bodies, built from the OpenAPI file's components."""

    def __init__(self, spec: dict[str, Any]):
        self._spec = spec
        self._cache: dict[str, Any] = {}

    def check(self, name: str, body: Any) -> None:
        validator = self._cache.get(name)
        if validator is None:
            validator = self._cache[name] = jsonschema_rs.validator_for(
                {"$ref": f"#/components/schemas/{name}", "components": self._spec["components"]})
        for error in validator.iter_errors(body):
            where = "/".join(str(p) for p in error.instance_path) or "the body"
            message = error.message
            if len(message) > _MESSAGE_LIMIT:
                message = message[:_MESSAGE_LIMIT] + "..."
            raise Refused(422, "invalid_request", f"{where}: {message}")
