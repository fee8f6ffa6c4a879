"""nbgrader's cell-metadata validation, with its JSON schema checked once instead of on every cell.

nbgrader's `CheckCellMetadata` (run twice per autograded notebook) calls
`jsonschema.validate(metadata, schema)` for each cell, and `jsonschema.validate` first
checks the schema itself against the JSON-Schema meta-schema: ~0.45 s of a worker's
time per ps01 submission, for a schema that never changes. `install()` points the
`jsonschema` name nbgrader's validator module uses at a stand-in whose `validate` keeps
one checked validator per schema. Instances are validated exactly as before and the same
`ValidationError` is raised; only the grading worker's own process installs it.
"""

from __future__ import annotations

import json
import types

import jsonschema

_validators: dict[str, jsonschema.protocols.Validator] = {}


def validate(instance: object, schema: dict) -> None:
    """jsonschema.validate, with the schema's own check and validator made once per schema."""
    key = json.dumps(schema, sort_keys=True)
    validator = _validators.get(key)
    if validator is None:
        cls = jsonschema.validators.validator_for(schema)
        cls.check_schema(schema)
        validator = _validators[key] = cls(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(instance))
    if error is not None:
        raise error


def install() -> None:
    """Make nbgrader's metadata validator use `validate` (idempotent)."""
    from nbgrader.nbgraderformat import common

    common.jsonschema = types.SimpleNamespace(validate=validate)  # the only name it uses
