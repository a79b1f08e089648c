"""Checks real answers against the server's OpenAPI document: the operation must be in it,
the status documented, and a JSON body valid against the documented schema (JSON Schema
2020-12, as OpenAPI 3.1 uses). Hook it into an httpx client to check every answer:

    contract = Contract(client.get("/api/openapi.json").json())
    client.event_hooks["response"].append(contract.check)
"""

from __future__ import annotations

import re
from typing import Any

import httpx
from jsonschema import Draft202012Validator


class Contract:
    """The document's operations, matched by method and path."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.components = document.get("components", {})
        self.operations: list[tuple[str, re.Pattern[str], str, dict[str, Any]]] = []
        for template, item in document["paths"].items():
            # A literal segment beats a parameter: try the most literal templates first.
            pattern = re.sub(r"\\\{(\w+)\\\}", "[^/]+", re.escape(template))
            if template.endswith("{path}"):
                pattern = pattern[: -len("[^/]+")] + ".+"
            for method, operation in item.items():
                self.operations.append(
                    (method.upper(), re.compile(f"^{pattern}$"), template, operation)
                )
        self.operations.sort(key=lambda op: op[2].count("{"))
        self.checked: set[tuple[str, str, int]] = set()

    def operation(self, method: str, path: str) -> tuple[str, dict[str, Any]]:
        for op_method, pattern, template, operation in self.operations:
            if op_method == method and pattern.match(path):
                return template, operation
        raise AssertionError(f"{method} {path} is not in the OpenAPI document")

    def check(self, response: httpx.Response) -> None:
        """Fail unless the answer is what the document says (reads the body if needed)."""
        request = response.request
        template, operation = self.operation(request.method, request.url.path)
        status = response.status_code
        documented = operation["responses"].get(str(status))
        where = f"{request.method} {template} → {status}"
        assert documented is not None, f"{where}: status not documented"
        self.checked.add((request.method, template, status))
        content = documented.get("content")
        if not content:
            response.read()
            assert not response.content, f"{where}: a body where none is documented"
            return
        media = response.headers.get("content-type", "").split(";")[0].strip()
        assert media in content, f"{where}: {media} is not one of {list(content)}"
        if media != "application/json":
            return
        response.read()
        schema = {**content[media]["schema"], "components": self.components}
        errors = sorted(
            Draft202012Validator(schema).iter_errors(response.json()), key=lambda e: list(e.path)
        )
        assert not errors, f"{where}: " + "; ".join(
            f"{'/'.join(map(str, e.path)) or 'body'}: {e.message}" for e in errors[:5]
        )
