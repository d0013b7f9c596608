"""Writes the excerpt of OpenAI's official OpenAPI spec that the fake bridge's request checks
are compared with (tests/test_fake_spec.py): for each request schema the fake checks, its
required fields and each property's JSON type and numeric bounds.

    python scripts/openapi_excerpt.py path/to/openai-openapi/openapi.json <commit> OUT_DIR

The spec lives in github.com/openai/openai-openapi (MIT). The excerpt is data of another
project, kept outside this repository: OUT_DIR is the outside data set `openai-openapi`
(tests/outside_data.py), and its SOURCES.md records the commit it was taken from.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

SCHEMAS = ("CreateChatCompletionRequest", "CreateResponse")


def resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str):
        return resolve(spec, spec["components"]["schemas"][ref.rsplit("/", 1)[-1]])
    return schema


def parts(spec: dict[str, Any], schema: dict[str, Any]) -> list[dict[str, Any]]:
    """The schema and every `allOf` part, `$ref`s resolved."""
    schema = resolve(spec, schema)
    found = [schema]
    for part in schema.get("allOf", []):
        found += parts(spec, part)
    return found


def bounds(spec: dict[str, Any], prop: dict[str, Any]) -> dict[str, Any]:
    """The property's JSON types and bounds, across its `anyOf` alternatives."""
    prop = resolve(spec, prop)
    alternatives = [resolve(spec, alt) for alt in prop.get("anyOf", prop.get("oneOf", [prop]))]
    types = sorted({alt["type"] for alt in alternatives if isinstance(alt.get("type"), str)})
    found: dict[str, Any] = {"types": types}
    for alt in alternatives:
        for key in ("minimum", "maximum", "maxItems", "minItems"):
            if key in alt:
                found[key] = alt[key]
    return found


def excerpt(spec: dict[str, Any], commit: str) -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    for name in SCHEMAS:
        required: list[str] = []
        properties: dict[str, Any] = {}
        for part in parts(spec, spec["components"]["schemas"][name]):
            required += part.get("required", [])
            for prop_name, prop in part.get("properties", {}).items():
                properties[prop_name] = bounds(spec, prop)
        schemas[name] = {"required": sorted(set(required)), "properties": properties}
    return {
        "source": "https://github.com/openai/openai-openapi",
        "commit": commit,
        "spec_version": spec["info"]["version"],
        "schemas": schemas,
    }


def main() -> None:
    path, commit, out_dir = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    spec = json.loads(Path(path).read_text())
    out = out_dir / "excerpt.json"
    out.write_text(json.dumps(excerpt(spec, commit), indent=1, sort_keys=True) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
