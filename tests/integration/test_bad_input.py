"""Bad input for every endpoint of events, settings and data-subject rights:
each is a 4xx problem document naming the bad fields by JSON pointer, and
nothing is stored (read back after each)."""
import json

import pytest
import requests

from apihelp import malformed_bodies
from datahelp import assert_problem, audit_records, call, oid, summary

GOOD_EVENT = {"events": [{"name": "a", "app": "b"}]}

# (label, body, a pointer that must be blamed or None)
SHAPE_CASES = [
    ("wrong-type-events", {"events": "x"}, "/events"),
    ("wrong-type-name", {"events": [{"name": 5, "app": "b"}]}, "/events/0/name"),
    ("unknown-top", {"events": [{"name": "a", "app": "b"}], "extra": 1}, "/extra"),
    ("unknown-event", {"events": [{"name": "a", "app": "b", "x": 1}]}, "/events/0/x"),
    ("oversized", {"events": [{"name": "a" * 100000, "app": "b"}]}, "/events/0/name"),
    ("huge-metric", {"events": [{"name": "a", "app": "b",
                                 "metrics": {"m": 10 ** 400}}]}, None),
    ("bool-as-number", {"events": [{"name": "a", "app": "b",
                                    "metrics": {"m": True}}]}, "/events/0/metrics/m"),
]


def raw(d, method, path, tok, body, ctype="application/json"):
    return requests.request(method, d.url(path, direct=True), data=body,
                            verify=str(d.certs.ca), timeout=30,
                            headers={"Authorization": "Bearer " + tok,
                                     "Content-Type": ctype})


def bodies():
    out = list(malformed_bodies(GOOD_EVENT))
    out.append(("nul-in-name", b'{"events":[{"name":"a\\u0000","app":"b"}]}', ""))
    out.append(("latin1", '{"events":[{"name":"\xe9","app":"b"}]}'.encode("latin-1"), ""))
    out.append(("trailing", json.dumps(GOOD_EVENT).encode() + b" x", ""))
    for label, body, ptr in SHAPE_CASES:
        text = json.dumps(body) if label != "huge-metric" else \
            '{"events":[{"name":"a","app":"b","metrics":{"m":1e400}}]}'
        out.append((label, text.encode(), ptr))
    return out


@pytest.fixture
def daemon(tenantd, auth_token):
    d = tenantd()
    d.admin = auth_token(d, "root", ["admin"])
    d.alice = auth_token(d, "alice")
    return d


def nothing_stored(d):
    assert summary(d, d.admin, **{"from": "2020-01-01", "to": "2020-12-31"}) == {}
    assert summary(d, d.admin) == {}
    for scope in ("tenant", "user", "site:s"):
        assert call(d, "GET", "/v1/settings/" + scope, d.admin).json()["items"] == []
    assert audit_records(d, "events.ingest") == []
    assert audit_records(d, "settings.put") == []


def check(r, pointer):
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:200])
    doc = assert_problem(r, r.status_code, pointer or None)
    assert doc.get("errors") or r.status_code in (413, 415), doc


def test_events_bad_bodies(daemon):
    d = daemon
    for label, body, ptr in bodies():
        check(raw(d, "POST", "/v1/events", d.alice, body), ptr)
    check(raw(d, "POST", "/v1/events", d.alice, json.dumps(GOOD_EVENT), "text/plain"), None)
    nothing_stored(d)


def test_settings_bad_bodies(daemon):
    d = daemon
    cases = list(malformed_bodies({"value": 1}))
    cases += [("unknown", b'{"value": 1, "other": 2}', "/other"),
              ("missing", b'{"valu": 1}', "/value"),
              ("bare-value", b'"blue"', ""),
              ("huge-number", b'{"value": 1e999}', ""),
              ("oversized", json.dumps({"value": "x" * 70000}).encode(), "/value")]
    for path in ("tenant/k", "user/k", "site:s/k"):
        for label, body, ptr in cases:
            check(raw(d, "PUT", "/v1/settings/" + path, d.admin, body), ptr)
    nothing_stored(d)
    for path in ("tenant/k", "user/k"):
        assert_problem(call(d, "GET", "/v1/settings/" + path, d.admin), 404)


def test_subject_bad_bodies(daemon):
    d = daemon
    reid = list(malformed_bodies({"pseudonym": "p_" + "a" * 26, "reason": "x" * 12}))
    reid += [("wrong-types", b'{"pseudonym": 1, "reason": []}', "/pseudonym"),
             ("unknown", b'{"pseudonym": "p_aaaaaaaaaaaaaaaaaaaaaaaaaa", '
              b'"reason": "long enough reason", "why": 1}', "/why"),
             ("oversized", json.dumps({"pseudonym": "p_" + "a" * 26,
                                       "reason": "r" * 5000}).encode(), "/reason"),
             ("missing", b'{}', "/reason")]
    for label, body, ptr in reid:
        check(raw(d, "POST", "/v1/admin/reidentify", d.admin, body), ptr)
    erase = "/v1/admin/subjects/%s/erase" % oid(d.alice)
    for label, body, ptr in malformed_bodies({}):
        if label == "empty":
            continue        # an empty body is the normal case
        check(raw(d, "POST", erase, d.admin, body), ptr)
    assert audit_records(d, "subject.erase") == []
    assert audit_records(d, "subject.reidentify") == []


def test_bad_query_parameters(daemon):
    d = daemon
    for q in ("from=yesterday", "to=2026-13-01", "group_by=user", "app=A",
              "name=" + "x" * 65, "from=2026-01-10&to=2026-01-01",
              "from=2024-01-01&to=2026-01-01"):
        r = call(d, "GET", "/v1/events/summary?" + q, d.admin, direct=True)
        doc = assert_problem(r, 400)
        assert doc["errors"][0]["parameter"] in ("from", "to", "group_by", "app", "name")
    for path in ("/v1/admin/subjects/%s/export", "/v1/admin/subjects/%s/erase"):
        for bad in ("x", "72f988bf86f141af91ab2d7cd011db47", "../etc",
                    "72f988bf-86f1-41af-91ab-2d7cd011db4g"):
            r = call(d, "GET" if path.endswith("export") else "POST",
                     path % bad, d.admin, direct=True)
            assert r.status_code in (400, 404), r.text
    nothing_stored(d)
