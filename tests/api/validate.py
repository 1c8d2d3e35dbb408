#!/usr/bin/env python3
"""Validates proto-spec/openapi.yaml itself (openapi-spec-validator), then every recorded
HTTP API response against it (openapi-schema-validator, OpenAPI 3.1 schemas).

usage: validate.py SPEC RECORDS.jsonl
Each record: {"method", "path", "status", "content_type", "body"}.
Exit 0: all valid; 1: something does not match (printed); 3: the validators are not
installed (the Rust tests skip then, unless SWITCHBOARD_REQUIRE_OPENAPI is set).
"""
import json
import re
import sys

try:
    import yaml
    from openapi_spec_validator import validate as validate_spec
    from openapi_schema_validator import OAS31Validator
except ImportError as e:  # pragma: no cover
    print(f"missing Python module: {e.name} (pip install openapi-spec-validator pyyaml)",
          file=sys.stderr)
    sys.exit(3)


def main():
    spec_path, records_path = sys.argv[1], sys.argv[2]
    with open(spec_path) as f:
        spec = yaml.safe_load(f)
    validate_spec(spec)
    paths = []
    for template, item in spec.get("paths", {}).items():
        pattern = "^" + re.sub(r"\{[^/}]+\}", "[^/]+", template) + "$"
        paths.append((re.compile(pattern), template, item))
    failures = 0
    count = 0
    with open(records_path) as f:
        for line in f:
            if not line.strip():
                continue
            r = json.loads(line)
            count += 1
            where = f"{r['method']} {r['path']} -> {r['status']}"
            match = [(t, item) for (p, t, item) in paths if p.match(r["path"])]
            if not match:
                # Not a route: only a 404 with the error body is right.
                unknown = {"responses": {"404": {"$ref": "#/components/responses/Error"}}}
                match = [(None, {m: unknown for m in ("get", "post", "put", "delete",
                                                       "patch", "options")})]
            template, item = match[0]
            method = "get" if r["method"] == "HEAD" else r["method"].lower()
            op = item.get(method)
            if op is None and r["status"] == 405:
                # A method the route does not take: 405 with the error body (the
                # spec's info.description says so; OpenAPI lists only methods taken).
                op = {"responses": {"405": {"$ref": "#/components/responses/Error"}}}
            if op is None:
                print(f"{where}: method not in the spec for {template}")
                failures += 1
                continue
            responses = op.get("responses", {})
            resp = responses.get(str(r["status"])) or responses.get("default")
            if resp is None:
                print(f"{where}: status not documented for {method.upper()} {template}")
                failures += 1
                continue
            if "$ref" in resp:
                name = resp["$ref"].split("/")[-1]
                resp = spec["components"]["responses"][name]
            content = resp.get("content")
            if not content:
                if r["body"]:
                    print(f"{where}: documented without a body, got {r['body'][:200]!r}")
                    failures += 1
                continue
            if r["method"] == "HEAD":
                continue
            ctype = (r.get("content_type") or "").split(";")[0].strip()
            media = content.get(ctype)
            if media is None and "*/*" in content and ctype:
                # Bytes of any media type (an attachment): nothing to parse.
                continue
            if media is None:
                print(f"{where}: content type {ctype!r} not documented ({list(content)})")
                failures += 1
                continue
            schema = dict(media["schema"])
            schema["components"] = spec["components"]
            try:
                if ctype == "application/x-ndjson":
                    # JSON Lines: each line is one document of the schema.
                    bodies = [json.loads(l) for l in r["body"].splitlines()]
                else:
                    bodies = [json.loads(r["body"])]
            except ValueError as e:
                print(f"{where}: body is not JSON: {e}")
                failures += 1
                continue
            validator = OAS31Validator(schema)
            errors = [e for body in bodies for e in validator.iter_errors(body)]
            for e in errors:
                print(f"{where}: {'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}")
            failures += bool(errors)
    print(f"{count} responses checked against {spec_path}: {failures} not matching")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
