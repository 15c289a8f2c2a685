"""The documents agree with the tables in the code: docs/openapi.yaml
describes every route of src/api.c with the same role (redocly lints it
and prism checks traffic against it: make contract-test), and
docs/AUDIT.md lists every audit action of src/audit.c."""
import re

from conftest import TOP

ROLE = {"ROLE_PUBLIC": "public", "ROLE_USER": "user", "ROLE_AUDITOR": "auditor",
        "ROLE_ADMIN": "admin"}


def route_table():
    text = (TOP / "src" / "api.c").read_text()
    rows = re.findall(r'\{\s*"([A-Z]+)",\s*"([^"]+)",\s*\w+,\s*(ROLE_\w+)', text)
    assert len(rows) >= 20, "could not read the route table"
    return rows


def openapi_operations():
    """path -> method -> role, read from the document's block structure."""
    ops, path, method = {}, None, None
    for line in (TOP / "docs" / "openapi.yaml").read_text().splitlines():
        m = re.match(r"^  (/\S*):\s*$", line)
        if m:
            path, method = m.group(1), None
            ops[path] = {}
            continue
        m = re.match(r"^    (get|put|post|patch|delete):\s*$", line)
        if m and path is not None:
            method = m.group(1).upper()
            ops[path][method] = None
            continue
        m = re.match(r"^      x-tenantd-role:\s*(\w+)", line)
        if m and path is not None and method is not None:
            ops[path][method] = m.group(1)
        if re.match(r"^\S", line):
            path = None
    return ops


def test_every_route_is_described_with_its_role():
    ops = openapi_operations()
    missing, wrong = [], []
    for method, pattern, role in route_table():
        if method not in ops.get(pattern, {}):
            missing.append("%s %s" % (method, pattern))
            continue
        if ops[pattern][method] != ROLE[role]:
            wrong.append("%s %s: %s vs %s" % (method, pattern, ops[pattern][method], ROLE[role]))
    assert missing == [], "routes not in docs/openapi.yaml: %s" % missing
    assert wrong == [], "roles differ: %s" % wrong


def test_no_operation_without_a_route():
    routes = {(m, p) for m, p, _ in route_table()}
    extra = ["%s %s" % (m, p) for p, methods in openapi_operations().items()
             for m in methods if (m, p) not in routes]
    assert extra == [], "documented but not routed: %s" % extra


def test_every_audit_action_is_documented():
    actions = re.findall(r'\{\s*"([a-z_]+\.[a-z_.]+)",',
                         (TOP / "src" / "audit.c").read_text())
    assert len(actions) >= 40
    doc = (TOP / "docs" / "AUDIT.md").read_text()
    missing = [a for a in actions if "`%s`" % a not in doc]
    assert missing == [], "actions not in docs/AUDIT.md: %s" % missing
