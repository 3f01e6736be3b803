"""Validate a JSON document against a JSON Schema with the PyPI `jsonschema` package.

usage: validate_json.py SCHEMA [EXTRA_SCHEMA ...] < document.json

Extra schemas are registered under their `$id` so that `$ref`s between the vendored
CycloneDX schemas (bom-1.5 -> spdx, jsf-0.82) resolve offline. Exit 0 when valid, 1 with
every error on stderr otherwise.
"""
import json
import sys

import jsonschema
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7


def main() -> int:
    schemas = [json.load(open(p, encoding="utf-8")) for p in sys.argv[1:]]
    main_schema = schemas[0]
    registry = Registry()
    for s in schemas:
        if "$id" in s:
            registry = registry.with_resource(
                s["$id"], Resource.from_contents(s, default_specification=DRAFT7)
            )
    cls = jsonschema.validators.validator_for(main_schema)
    cls.check_schema(main_schema)
    validator = cls(main_schema, registry=registry, format_checker=cls.FORMAT_CHECKER)
    doc = json.load(sys.stdin)
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    for e in errors:
        print(f"{'/'.join(map(str, e.absolute_path))}: {e.message}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
