"""Usage events: ingest (durable, under the caller's pseudonym, with the
per-day aggregates), the summary, limits, personal data in props, audit,
storage full."""
import signal

from datahelp import (assert_problem, audit_records, call, now_iso, oid,
                      post_events, pseudonym, summary, today)


def ev(name="viewer.open", app="ifc-viewer", **kw):
    e = {"name": name, "app": app}
    e.update(kw)
    return e


def test_ingest_and_summary(tenantd, auth_token):
    d = tenantd()
    alice, bob = auth_token(d, "alice"), auth_token(d, "bob")
    admin = auth_token(d, "root", ["admin"])
    auditor = auth_token(d, "eve", ["auditor"])
    r = post_events(d, alice, [ev(metrics={"ms": 10}), ev(metrics={"ms": 30.5}),
                               ev("viewer.close", props={"mode": "3d"})])
    assert r.status_code == 202, r.text
    assert r.json() == {"accepted": 3}
    r = post_events(d, bob, [ev(metrics={"ms": 2}), ev(app="dwg-viewer", ts=now_iso(-60))])
    assert r.json() == {"accepted": 2}
    by_name = summary(d, admin)
    assert by_name["viewer.open"]["count"] == 4
    assert by_name["viewer.open"]["users"] == 2
    assert by_name["viewer.open"]["metrics"]["ms"] == {
        "sum": 42.5, "min": 2, "max": 30.5, "avg": 42.5 / 3}
    assert by_name["viewer.close"] == {"key": "viewer.close", "count": 1,
                                       "users": 1, "metrics": {}}
    by_app = summary(d, auditor, group_by="app")
    assert (by_app["ifc-viewer"]["count"], by_app["dwg-viewer"]["count"]) == (4, 1)
    assert by_app["ifc-viewer"]["users"] == 2 and by_app["dwg-viewer"]["users"] == 1
    by_day = summary(d, admin, group_by="day", app="ifc-viewer", name="viewer.open")
    assert list(by_day) == [today()] and by_day[today()]["count"] == 3
    assert summary(d, admin, **{"from": today(-30), "to": today(-20)}) == {}
    assert_problem(call(d, "GET", "/v1/events/summary", alice, direct=True), 403)
    assert_problem(call(d, "GET", "/v1/events/summary", None, direct=True), 401)


def test_user_is_the_callers_pseudonym(tenantd, auth_token):
    d = tenantd()
    alice, admin = auth_token(d, "alice"), auth_token(d, "root", ["admin"])
    bob = auth_token(d, "bob")
    for field in ("user", "pseudonym", "oid"):
        r = post_events(d, alice, [ev(**{field: pseudonym(d, bob)})], direct=True)
        assert_problem(r, 400, "/events/0/" + field)
    assert post_events(d, alice, [ev()]).status_code == 202
    a = call(d, "GET", "/v1/admin/subjects/%s/export" % oid(alice), admin).json()
    b = call(d, "GET", "/v1/admin/subjects/%s/export" % oid(bob), admin).json()
    assert len(a["events"]) == 1 and b["events"] == []
    assert a["subject"]["pseudonym"] == pseudonym(d, alice)
    assert a["events"][0]["name"] == "viewer.open" and "user" not in a["events"][0]


def test_limits_and_nothing_stored(tenantd, auth_token):
    d = tenantd()
    alice, admin = auth_token(d, "alice"), auth_token(d, "root", ["admin"])
    cases = [
        ([], "/events"),
        ([ev()] * 501, "/events"),
        ([ev("Viewer.Open")], "/events/0/name"),
        ([ev("x" * 65)], "/events/0/name"),
        ([ev(app="")], "/events/0/app"),
        ([{"app": "a"}], "/events/0/name"),
        ([ev(ts=now_iso(-8 * 86400))], "/events/0/ts"),
        ([ev(ts=now_iso(600))], "/events/0/ts"),
        ([ev(ts="yesterday")], "/events/0/ts"),
        ([ev(props={"k%d" % i: "v" for i in range(17)})], "/events/0/props"),
        ([ev(props={"k": "v" * 257})], "/events/0/props/k"),
        ([ev(props={"k": 5})], "/events/0/props/k"),
        ([ev(props={"Bad Key": "v"})], "/events/0/props/Bad Key"),
        ([ev(props={"k": "a\nb"})], "/events/0/props/k"),
        ([ev(metrics={"m%d" % i: 1 for i in range(17)})], "/events/0/metrics"),
        ([ev(metrics={"ms": "12"})], "/events/0/metrics/ms"),
        ([ev(metrics={"ms": None})], "/events/0/metrics/ms"),
        ([ev(), ev(metrics=[1])], "/events/1/metrics"),
        ([ev(), "x"], "/events/1"),
    ]
    for events, pointer in cases:
        assert_problem(post_events(d, alice, events, direct=True), 400, pointer)
    # Every bad field is listed, not just the first.
    r = post_events(d, alice, [ev("A", props={"k": 1}), ev(metrics={"x": "y"})], direct=True)
    doc = assert_problem(r, 400)
    assert {e["pointer"] for e in doc["errors"]} == {
        "/events/0/name", "/events/0/props/k", "/events/1/metrics/x"}
    assert summary(d, admin, **{"from": today(-8), "to": today(1)}) == {}
    # The limits themselves are accepted.
    ok = [ev(props={"k%d" % i: "v" * 256 for i in range(16)},
             metrics={"m%d" % i: i * 1.5 for i in range(16)},
             ts=now_iso(-6 * 86400))] + [ev()] * 499
    r = post_events(d, alice, ok)
    assert r.status_code == 202 and r.json() == {"accepted": 500}, r.text[:300]


def test_personal_data_in_props_refused(tenantd, auth_token):
    d = tenantd()
    alice, admin = auth_token(d, "alice"), auth_token(d, "root", ["admin"])
    for value in ("alice@contoso.com", "mail me: bob.smith@fabrikam.onmicrosoft.com",
                  "alice%40contoso.com", "ALICE@CONTOSO.COM", "user\uff20contoso.com"):
        r = post_events(d, alice, [ev(props={"who": value})], direct=True)
        doc = assert_problem(r, 400, "/events/0/props/who")
        assert "personal data" in doc["errors"][0]["detail"]
    for value in ("@mention", "a @ b", "version 2.0", "price@", "x@localhost"):
        r = post_events(d, alice, [ev(props={"text": value})])
        assert r.status_code == 202, (value, r.text)
    assert summary(d, admin)["viewer.open"]["count"] == 5


def test_ts_defaults_to_server_time_and_is_durable(tenantd, auth_token):
    d = tenantd()
    alice, admin = auth_token(d, "alice"), auth_token(d, "root", ["admin"])
    assert post_events(d, alice, [ev()]).status_code == 202
    a = call(d, "GET", "/v1/admin/subjects/%s/export" % oid(alice), admin).json()
    assert a["events"][0]["ts"][:10] == today()
    # 202 means committed: a kill -9 right after loses nothing.
    for i in range(20):
        assert post_events(d, alice, [ev("burst")]).status_code == 202
    d.signal(signal.SIGKILL)
    d.proc.wait()
    d.start()
    admin = auth_token(d, "root", ["admin"])
    assert summary(d, admin)["burst"]["count"] == 20


def test_ingest_is_audited(tenantd, auth_token):
    d = tenantd()
    alice = auth_token(d, "alice")
    assert post_events(d, alice, [ev(), ev()]).status_code == 202
    recs = audit_records(d, "events.ingest")
    assert len(recs) == 1
    assert recs[0]["actor"] == pseudonym(d, alice)
    assert recs[0]["details"]["count"] == 2 and recs[0]["status"] == 202


def test_storage_full_is_507(tenantd, auth_token):
    d = tenantd({"storage": {"max_size": "256KiB"}})
    alice, admin = auth_token(d, "alice"), auth_token(d, "root", ["admin"])
    batch = [ev(props={"k%d" % i: "v" * 200 for i in range(4)})] * 10
    full = None
    accepted = 0
    for _ in range(1000):
        r = post_events(d, alice, batch, direct=True)
        if r.status_code != 202:
            full = r
            break
        accepted += 10
    assert full is not None and accepted > 0, "never filled a 256 KiB store"
    doc = assert_problem(full, 507)
    assert "full" in doc["detail"]
    # Reads go on; the refused batch left nothing behind.
    assert summary(d, admin)["viewer.open"]["count"] == accepted
    assert len(audit_records(d, "events.ingest")) == accepted // 10
