"""docs/openapi.yaml against a running gatekeeper (run.sh starts one and sets the API_CONTRACT_*
variables): every documented operation answers as documented, every example request succeeds
with a body of its schema, undocumented paths and methods are 404/405, the error codes and
statuses are those of services/sqlgate/src/error.rs, a streamed /query's lines are as documented.
Each failure says which case and what came back."""

import json
import os
import re
from pathlib import Path

import jsonschema
import pytest
import requests
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

ENV = os.environ
SPEC_PATH = Path(ENV["API_CONTRACT_SPEC"])
SPEC = yaml.safe_load(SPEC_PATH.read_text())
URL = ENV["API_CONTRACT_URL"]
ADMIN_URL = ENV["API_CONTRACT_ADMIN_URL"]
CA = ENV["API_CONTRACT_CA"]
KEYS = {r: Path(ENV["API_CONTRACT_KEYS"], r).read_text().strip() for r in ("read", "write", "admin")}
ERROR_RS = Path(ENV["API_CONTRACT_ERROR_RS"])

SPEC_URI = "urn:sqlgate:openapi"
REGISTRY = Registry().with_resource(SPEC_URI, Resource.from_contents(SPEC, default_specification=DRAFT202012))
METHODS = ("get", "post", "put", "delete", "patch")
OPERATIONS = [(path, method) for path, item in SPEC["paths"].items() for method in item if method in METHODS]
ERROR_STATUS = SPEC["components"]["schemas"]["ErrorCode"]["x-status"]


def deref(node):
    while isinstance(node, dict) and "$ref" in node:
        target = SPEC
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def validate(instance, schema, what):
    """Validates against a schema of the document (its `$ref`s resolved within it)."""
    wrapped = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$defs": {}, **schema}
    wrapped = json.loads(json.dumps(wrapped).replace('"#/components/', f'"{SPEC_URI}#/components/'))
    errors = sorted(jsonschema.Draft202012Validator(wrapped, registry=REGISTRY).iter_errors(instance), key=str)
    assert not errors, f"{what}: {instance!r} does not match the documented schema: {errors[0].message}"


def schema_of(name):
    return {"$ref": f"#/components/schemas/{name}"}


def documented_response(path, method, status, content_type):
    """The documented schema for this answer; fails when the status or content type is not documented."""
    op = SPEC["paths"][path][method]
    response = op["responses"].get(str(status))
    assert response is not None, f"{method.upper()} {path} answered {status}, which is not documented ({sorted(op['responses'])})"
    response = deref(response)
    media = content_type.split(";")[0].strip()
    content = response.get("content", {})
    assert media in content, f"{method.upper()} {path} {status} answered {media}, documented: {sorted(content)}"
    return response, content[media]["schema"]


def check_answer(path, method, resp, what):
    """The answer's status and content type are documented for the operation and its body matches."""
    response, schema = documented_response(path, method, resp.status_code, resp.headers.get("Content-Type", ""))
    for name, header in response.get("headers", {}).items():
        header = deref(header)
        if header.get("required"):
            assert name in resp.headers, f"{what}: documented header {name} is missing"
    if resp.headers["Content-Type"].startswith("application/json"):
        validate(resp.json(), schema, what)
    return resp


def post(path, body, role="admin", **kw):
    headers = {"Content-Type": "application/json", **kw.pop("headers", {})}
    if role:
        headers["X-API-Key"] = KEYS[role]
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return requests.post(URL + path, data=data, headers=headers, verify=CA, timeout=60, **kw)


@pytest.fixture(scope="module", autouse=True)
def app_items():
    """The table the /batch examples write to (app is the application schema left to users)."""
    for sql in (
        "DROP TABLE IF EXISTS app.items",
        "CREATE TABLE app.items (id INT AUTO_INCREMENT PRIMARY KEY, sku VARCHAR(32) NOT NULL UNIQUE, price DECIMAL(10,2))",
    ):
        resp = post("/query", {"sql": sql})
        assert resp.status_code == 200, f"setting up app.items: {sql}: {resp.status_code} {resp.text}"


def test_error_codes_are_those_of_error_rs():
    """The ErrorCode enum and its statuses are exactly ErrorCode::contract's in error.rs."""
    text = ERROR_RS.read_text()
    contract = text[text.index("fn contract(self)"):]
    contract = contract[: contract.index("pub fn status(self)")]
    rows = re.findall(r'\(\s*"([a-z_]+)",\s*StatusCode::([A-Z_]+),', contract)
    statuses = {
        "BAD_REQUEST": 400, "UNAUTHORIZED": 401, "FORBIDDEN": 403, "NOT_FOUND": 404,
        "METHOD_NOT_ALLOWED": 405, "PAYLOAD_TOO_LARGE": 413, "UNSUPPORTED_MEDIA_TYPE": 415,
        "UNPROCESSABLE_ENTITY": 422, "TOO_MANY_REQUESTS": 429, "INTERNAL_SERVER_ERROR": 500,
        "BAD_GATEWAY": 502, "SERVICE_UNAVAILABLE": 503, "GATEWAY_TIMEOUT": 504,
    }
    unknown = {s for _, s in rows} - statuses.keys()
    assert not unknown, f"error.rs uses statuses this test does not know: {unknown}"
    in_rust = {name: statuses[s] for name, s in rows}
    count = int(re.search(r"pub const ALL: \[ErrorCode; (\d+)\]", text).group(1))
    assert len(in_rust) == count, f"read {len(in_rust)} codes from ErrorCode::contract, ErrorCode::ALL has {count}"
    enum = SPEC["components"]["schemas"]["ErrorCode"]["enum"]
    assert enum == list(in_rust), f"ErrorCode enum {enum} != error.rs {list(in_rust)}"
    assert ERROR_STATUS == in_rust, f"ErrorCode x-status {ERROR_STATUS} != error.rs {in_rust}"


def test_every_error_status_is_documented_where_it_can_occur():
    """Each SQL endpoint documents every status an error code maps to, but 404 and 405 (routing)."""
    statuses = {str(s) for s in ERROR_STATUS.values()} - {"404", "405"}
    for path in ("/query", "/transaction", "/batch"):
        documented = set(SPEC["paths"][path]["post"]["responses"])
        assert statuses <= documented, f"POST {path} lacks {sorted(statuses - documented)}"
        for status in statuses:
            _, schema = documented_response(path, "post", status, "application/json")
            assert schema == schema_of("ErrorBody"), f"POST {path} {status} is not an ErrorBody"


@pytest.mark.parametrize("path,method", OPERATIONS, ids=[f"{m.upper()} {p}" for p, m in OPERATIONS])
def test_every_documented_operation_exists(path, method):
    op = SPEC["paths"][path][method]
    base = op["servers"][0]["url"] if "servers" in op else URL
    if "servers" in op:
        # The documented server is an example address: use this stack's admin listener.
        assert path == "/metrics", f"{path}: only /metrics lives on another listener"
        base = ADMIN_URL
        public = requests.get(URL + path, verify=CA, timeout=30)
        assert public.status_code == 404, f"{path} on the public listener: {public.status_code}"
        validate(public.json(), schema_of("ErrorBody"), f"{path} on the public listener")
    if method == "get":
        resp = requests.get(base + path, verify=CA, timeout=30)
        assert resp.status_code == 200, f"GET {path}: {resp.status_code} {resp.text[:200]}"
        check_answer(path, method, resp, f"GET {path}")
        if path == "/health":
            assert resp.text == "ok", f"GET /health: {resp.text!r}"
        if path == "/metrics":
            assert "sqlgate_gatekeeper_requests_total" in resp.text, "GET /metrics names no gatekeeper metric"
    else:
        examples = op["requestBody"]["content"]["application/json"]["examples"]
        assert examples, f"{path} documents no example"
        resp = post(path, next(iter(examples.values()))["value"])
        assert resp.status_code not in (404, 405), f"POST {path}: {resp.status_code}"


EXAMPLES = [
    (path, name, ex["value"])
    for path, method in OPERATIONS
    if method == "post"
    for name, ex in SPEC["paths"][path][method]["requestBody"]["content"]["application/json"]["examples"].items()
]


@pytest.mark.parametrize("path,name,body", EXAMPLES, ids=[f"{p} {n}" for p, n, _ in EXAMPLES])
def test_every_example_succeeds_as_documented(path, name, body):
    """Each documented example, sent with the admin key, is a 200 whose body matches its schema."""
    if path == "/batch" and name == "named":
        # It inserts; the other tests may have sent it already.
        assert post("/query", {"sql": "DELETE FROM app.items"}).status_code == 200, "emptying app.items"
    validate(body, deref(SPEC["paths"][path]["post"]["requestBody"])["content"]["application/json"]["schema"], f"example {path} {name}")
    resp = post(path, body)
    assert resp.status_code == 200, f"example {path} {name}: {resp.status_code} {resp.text[:300]}"
    check_answer(path, "post", resp, f"example {path} {name}")
    assert resp.headers.get("X-Sqlgate-Node"), f"example {path} {name}: no X-Sqlgate-Node"
    if "request_id" in body:
        assert resp.json()["request_id"] == body["request_id"], f"example {path} {name}: request_id not echoed"


@pytest.mark.parametrize("path", [p for p in SPEC["paths"]] + ["/", "/nope", "/query/x", "/v1/query"])
def test_undocumented_methods_and_paths(path):
    """A documented path answers its other methods 405; an undocumented path answers 404."""
    documented = {m for m in SPEC["paths"].get(path, {}) if m in METHODS}
    for method in METHODS:
        if method in documented:
            continue
        base = ADMIN_URL if path == "/metrics" else URL
        resp = requests.request(method.upper(), base + path, headers={"X-API-Key": KEYS["admin"]}, verify=CA, timeout=30)
        want = 405 if documented else 404
        what = f"{method.upper()} {path}"
        assert resp.status_code == want, f"{what}: {resp.status_code}, want {want}"
        assert resp.headers["Content-Type"].startswith("application/json"), f"{what}: {resp.headers['Content-Type']}"
        validate(resp.json(), schema_of("ErrorBody"), what)
        code = resp.json()["error"]["code"]
        assert ERROR_STATUS[code] == want, f"{what}: code {code}"


# 10001 rows: one past PROXY_MAX_ROWS.
BIG = "SELECT a.actor_id, b.actor_id FROM sakila.actor a CROSS JOIN sakila.actor b LIMIT 10001"
ERRORS = [
    # (what, path, body, role, extra headers, expected code)
    ("no key", "/query", {"sql": "SELECT 1"}, None, {}, "unauthorized"),
    ("wrong key", "/query", {"sql": "SELECT 1"}, None, {"X-API-Key": "sk_nope_nope"}, "unauthorized"),
    ("not JSON", "/query", {"sql": "SELECT 1"}, "read", {"Content-Type": "text/plain"}, "unsupported_media_type"),
    ("body too large", "/query", {"sql": "SELECT '" + "x" * (1 << 20) + "'"}, "read", {}, "payload_too_large"),
    ("broken JSON", "/query", b'{"sql": ', "read", {}, "bad_request"),
    ("unknown field", "/query", {"sql": "SELECT 1", "nope": 1}, "read", {}, "bad_request"),
    ("bad request_id", "/query", {"sql": "SELECT 1", "request_id": "a b"}, "read", {}, "bad_request"),
    ("bad database", "/query", {"sql": "SELECT 1", "database": "a-b"}, "read", {}, "bad_request"),
    ("system database", "/query", {"sql": "SELECT 1", "database": "mysql"}, "read", {}, "forbidden"),
    ("bad after_gtid", "/query", {"sql": "SELECT 1", "after_gtid": "x'"}, "read", {}, "bad_request"),
    ("integer past 64 bits", "/query", {"sql": "SELECT ?", "params": [18446744073709551616]}, "read", {}, "bad_request"),
    ("two statements", "/query", {"sql": "SELECT 1; SELECT 2"}, "read", {}, "invalid_sql"),
    ("empty SQL", "/query", {"sql": ""}, "read", {}, "invalid_sql"),
    ("executable comment", "/query", {"sql": "SELECT /*! 1 */"}, "read", {}, "ambiguous_sql"),
    ("deny-list", "/query", {"sql": "SET @a = 1"}, "admin", {}, "statement_denied"),
    ("params count", "/query", {"sql": "SELECT ?", "params": []}, "read", {}, "invalid_params"),
    # Found by schemathesis: `:name` with no params reached the driver (503 instead of 400).
    ("named, no params", "/query", {"sql": "SELECT :a"}, "read", {}, "invalid_params"),
    ("named, empty set", "/batch", {"sql": "INSERT INTO app.items (sku) VALUES (:sku)", "param_sets": [[]]}, "write", {}, "invalid_params"),
    ("unused name", "/query", {"sql": "SELECT :a", "params": {"a": 1, "b": 2}}, "read", {}, "invalid_params"),
    ("bad typed value", "/query", {"sql": "SELECT ?", "params": [{"type": "date", "value": "2023-02-30"}]}, "read", {}, "invalid_params"),
    ("read key writes", "/query", {"sql": "DELETE FROM app.items"}, "read", {}, "forbidden"),
    ("missing table", "/query", {"sql": "SELECT * FROM app.nope"}, "read", {}, "sql_error"),
    ("result too large", "/query", {"sql": BIG}, "read", {}, "result_too_large"),
    ("empty transaction", "/transaction", {"statements": []}, "write", {}, "bad_request"),
    ("DDL in a transaction", "/transaction", {"statements": [{"sql": "SELECT 1"}, {"sql": "DROP TABLE app.items"}]}, "admin", {}, "statement_denied"),
    ("mode without read_only", "/transaction", {"statements": [{"sql": "SELECT 1"}], "mode": "random"}, "write", {}, "bad_request"),
    ("write in read_only", "/transaction", {"statements": [{"sql": "DELETE FROM app.items"}], "read_only": True}, "write", {}, "bad_request"),
    ("statement fails", "/transaction", {"statements": [{"sql": "SELECT 1"}, {"sql": "SELECT * FROM app.nope"}]}, "write", {}, "sql_error"),
    ("batch of a read", "/batch", {"sql": "SELECT ?", "param_sets": [[1]]}, "write", {}, "bad_request"),
    ("empty batch", "/batch", {"sql": "DELETE FROM app.items WHERE id = ?", "param_sets": []}, "write", {}, "bad_request"),
    ("batch set mismatch", "/batch", {"sql": "DELETE FROM app.items WHERE id = ?", "param_sets": [[1], []]}, "write", {}, "invalid_params"),
    ("batch by a read key", "/batch", {"sql": "DELETE FROM app.items WHERE id = ?", "param_sets": [[1]]}, "read", {}, "forbidden"),
    ("duplicate key", "/batch", {"sql": "INSERT INTO app.items (sku) VALUES (?)", "param_sets": [["dup"], ["dup"]]}, "write", {}, "sql_error"),
]


@pytest.mark.parametrize("what,path,body,role,headers,code", ERRORS, ids=[e[0] for e in ERRORS])
def test_errors_are_documented(what, path, body, role, headers, code):
    """Each refusal has its code, the status the code maps to, a documented status and an ErrorBody."""
    resp = post(path, body, role=role, headers=headers)
    check_answer(path, "post", resp, what)
    got = resp.json()["error"]
    assert got["code"] == code, f"{what}: {resp.status_code} {got}"
    assert resp.status_code == ERROR_STATUS[code], f"{what}: {code} came with {resp.status_code}"
    assert resp.json()["request_id"], f"{what}: no request_id"
    if code == "sql_error":
        assert isinstance(got.get("mysql_code"), int) and got.get("sqlstate"), f"{what}: {got}"
    if path != "/query" and what in ("statement fails", "DDL in a transaction", "duplicate key", "batch set mismatch"):
        assert got.get("statement_index") == 1, f"{what}: statement_index {got.get('statement_index')}"


def test_ndjson_stream_lines_are_documented():
    """A streamed /query: a header line, row lines, then the done line, each of its schema."""
    resp = post("/query", {"sql": BIG, "format": "objects"}, role="read",
                headers={"Accept": "application/x-ndjson"}, stream=True)
    assert resp.status_code == 200, f"stream: {resp.status_code} {resp.text[:200]}"
    response, schema = documented_response("/query", "post", 200, resp.headers["Content-Type"])
    assert resp.headers["Content-Type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in resp.iter_lines() if line]
    for i, line in enumerate(lines):
        validate(line, schema, f"stream line {i}")
    validate(lines[0], schema_of("StreamHeader"), "stream header")
    for row in lines[1:-1]:
        validate(row, schema_of("Row"), "stream row")
    validate(lines[-1], schema_of("StreamDone"), "stream done line")
    assert lines[-1]["row_count"] == len(lines) - 2 == 10001, f"rows: {lines[-1]} and {len(lines) - 2} lines"
    # Errors before the first line are the JSON form's.
    resp = post("/query", {"sql": "SELECT * FROM app.nope"}, role="read", headers={"Accept": "application/x-ndjson"})
    check_answer("/query", "post", resp, "stream of a missing table")
    assert resp.status_code == 422, f"stream of a missing table: {resp.status_code}"
    # /transaction and /batch document no stream.
    for path in ("/transaction", "/batch"):
        assert "application/x-ndjson" not in deref(SPEC["paths"][path]["post"]["responses"]["200"])["content"], path
