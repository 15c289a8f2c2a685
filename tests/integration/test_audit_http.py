"""The audit trail over HTTPS: the streamed export (CSV and JSON Lines)
for auditors and admins, verification, refused requests recorded, and
reading the trail recorded too."""
import csv
import re
import io
import json

import requests


def get(d, path, token=None, **kw):
    headers = {"Authorization": "Bearer " + token} if token else {}
    return requests.get(d.url(path), headers=headers, verify=str(d.certs.ca),
                        timeout=60, **kw)


def cli_export(d, *args):
    r = d.tenantctl("audit", "export", "--format", "jsonl", *args)
    assert r.returncode == 0, r.stderr
    return [json.loads(l) for l in r.stdout.splitlines() if l.strip()]


def test_export_streamed_csv_matches_the_trail(tenantd, auth_token):
    d = tenantd()
    writer = auth_token(d, "writer", ["admin"])
    s = requests.Session()
    s.headers["Authorization"] = "Bearer " + writer
    for i in range(1500):       # enough rows for many 64 KiB chunks
        r = s.post(d.url("/v1/events"), json={"events": [{"name": "viewer.open",
                   "app": "ifc-viewer", "props": {"n": str(i)}}]}, timeout=30,
                   verify=str(d.certs.ca))
        assert r.status_code == 202, r.text
    auditor = auth_token(d, "carol", ["auditor"])
    r = get(d, "/v1/admin/audit?format=csv&action=events.ingest", auditor, stream=True)
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/csv")
    assert r.headers.get("Transfer-Encoding") == "chunked"
    data = r.raw.read()
    assert data.startswith(b"\xef\xbb\xbfseq,ts,actor,")
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"), newline="")))
    local = cli_export(d, "--action", "events.ingest")
    assert len(rows) == len(local) == 1500
    for row, rec in zip(rows, local):
        assert int(row["seq"]) == rec["seq"] and row["hash"] == rec["hash"]


def test_export_jsonl_filters_and_is_itself_recorded(tenantd, auth_token):
    d = tenantd()
    admin = auth_token(d, "alice", ["admin"])
    r = get(d, "/v1/admin/audit?format=jsonl&bom=0", admin)
    assert r.status_code == 200
    recs = [json.loads(l) for l in r.text.splitlines()]
    assert recs and all(r2["seq"] == i + 1 for i, r2 in enumerate(recs))
    exports = [x for x in cli_export(d, "--action", "audit.export")
               if x["actor"].startswith("p_")]
    assert len(exports) == 1 and exports[0]["outcome"] == "ok"
    assert exports[0]["actor_roles"] == ["admin"]
    assert "format=jsonl" in json.dumps(exports[0]["details"])
    r = get(d, "/v1/admin/audit?format=xml", admin)
    assert r.status_code == 400
    assert r.headers["Content-Type"] == "application/problem+json"


def test_verify_route(tenantd, auth_token):
    d = tenantd()
    auditor = auth_token(d, "carol", ["auditor"])
    r = get(d, "/v1/admin/audit/verify", auditor)
    assert r.status_code == 200
    v = r.json()
    assert v["ok"] is True and v["last_seq"] >= 1
    cli = json.loads(d.tenantctl("--json", "audit", "verify").stdout)
    assert cli["ok"] is True and cli["head"] != "" and cli["pubkey"] == v["pubkey"]
    assert cli_export(d, "--action", "audit.verify")


def test_refused_requests_are_recorded(tenantd, auth_token):
    d = tenantd()
    user = auth_token(d, "bob", [])
    assert get(d, "/v1/admin/audit", user).status_code == 403
    assert get(d, "/v1/admin/audit", "not.a.token").status_code == 401
    assert get(d, "/v1/admin/audit").status_code == 401
    denied = cli_export(d, "--action", "auth.denied")
    statuses = sorted(r["status"] for r in denied)
    assert statuses == [401, 401, 403], denied
    for rec in denied:
        assert rec["outcome"] == "denied" and rec["target"] == "/v1/admin/audit"
    forbidden = [r for r in denied if r["status"] == 403][0]
    assert forbidden["actor"].startswith("p_")
    by_users = [x for x in cli_export(d, "--action", "audit.export")
                if not x["actor"].startswith("operator:")]
    assert by_users == []       # nothing was exported to them


def action_table():
    """route "METHOD /pattern" -> audit action, from src/audit.c."""
    from conftest import TOP
    text = (TOP / "src" / "audit.c").read_text()
    return {route: name for name, route in
            re.findall(r'\{\s*"([a-z_]+\.[a-z_.]+)",\s*(?:NULL|"[^"]*"),\s*"([A-Z]+ /[^"]*)"', text)}


def fill(pattern):
    return (pattern.replace("{scope}", "tenant").replace("{key}", "walk")
            .replace("{oid}", "00000000-0000-0000-0000-0000000000aa")
            .replace("{id}", "n_00000000000000000000000000000000"))


def records(d):
    return cli_export(d, "--from", "1")


def test_every_state_changing_route_writes_one_record(tenantd, auth_token):
    """Walks the route table: each state-changing route called as admin with
    a bad body writes exactly one record with the route's action; the
    first routes are also called without a token and with too small a role
    (auth.denied; denials are rate-limited to 10 per source a minute, so
    not every route gets those two)."""
    from test_openapi import route_table
    d = tenantd()
    actions = action_table()
    admin = auth_token(d, "alice", ["admin"])
    user = auth_token(d, "bob", [])
    checked = 0
    for method, pattern, role in route_table():
        if method not in ("POST", "PUT", "PATCH", "DELETE"):
            continue
        key = "%s %s" % (method, pattern)
        assert key in actions, "no audit action for %s" % key
        cases = []
        if checked < 8:
            cases.append((None, "auth.denied", 401))
            if role == "ROLE_ADMIN":
                cases.append((user, "auth.denied", 403))
        cases.append((admin, actions[key], None))
        for token, action, status in cases:
            before = records(d)[-1]["seq"]
            headers = {"Authorization": "Bearer " + token} if token else {}
            headers["Content-Type"] = "application/json"
            r = requests.request(method, d.url(fill(pattern)), data=b'{"bad": [',
                                 headers=headers, verify=str(d.certs.ca), timeout=30)
            if status is not None:
                assert r.status_code == status, (key, r.status_code)
            new = [x for x in records(d) if x["seq"] > before
                   and not x["actor"].startswith("operator:")]
            assert len(new) == 1, (key, token is not None, r.status_code, new)
            assert new[0]["action"] == action, (key, new[0])
            if status is None:
                want = "ok" if r.status_code < 400 else "error"
                assert new[0]["outcome"] == want, (key, new[0])
                assert new[0]["status"] == r.status_code, (key, new[0])
            checked += 1
    assert checked >= 12
