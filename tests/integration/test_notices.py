"""Notices: the API, tenantctl, bad input, tenantd's own notices and the
durable webhook delivery (signed JSON, Teams Adaptive Cards, retries)."""
import json
import os
import signal
import time

import pytest

from apihelp import assert_problem, call, malformed_bodies, token
from webhook_receiver import Receiver

NOTICE = {"kind": "maintenance", "severity": "info", "title": "Planned upgrade",
          "body": "Saturday 02:00-03:00 UTC.\nNo action needed.",
          "starts_at": "2030-01-04T02:00:00Z", "ends_at": "2030-01-04T03:00:00Z"}


def admin_notices(d, tok, since=None):
    r = call(d, "GET", "/v1/notices" + ("?since=" + since if since else ""), tok)
    assert r.status_code == 200, r.text
    return r.json()["notices"]


def wait_for(pred, timeout=60, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.2)
    raise AssertionError("%s not met within %ss" % (what, timeout))


def test_publish_list_update(tenantd):
    d = tenantd()
    admin, user = token(d, "root", ["admin"]), token(d, "bob")
    r = call(d, "POST", "/v1/admin/notices", admin, json=NOTICE)
    assert r.status_code == 201, r.text
    n = r.json()
    for k, v in NOTICE.items():
        assert n[k] == v
    assert n["source"] == "admin" and n["created_at"] == n["updated_at"]
    listed = admin_notices(d, user)
    assert n in listed
    r = call(d, "PATCH", "/v1/admin/notices/" + n["id"], admin,
             json={"severity": "warning", "ends_at": None})
    assert r.status_code == 200, r.text
    m = r.json()
    assert m["severity"] == "warning" and m["ends_at"] is None
    assert m["title"] == NOTICE["title"] and m["updated_at"] > n["updated_at"]
    assert admin_notices(d, user, since=m["updated_at"]) == [m]
    assert admin_notices(d, user, since="2100-01-01T00:00:00Z") == []


def test_roles(tenantd):
    d = tenantd()
    user = token(d, "bob")
    assert_problem(call(d, "POST", "/v1/admin/notices", user, json=NOTICE, direct=True), 403)
    assert_problem(call(d, "GET", "/v1/notices", None, direct=True), 401)


@pytest.mark.parametrize("name,body,pointer", malformed_bodies(NOTICE))
def test_malformed_bodies_store_nothing(tenantd, name, body, pointer):
    d = tenantd()
    admin = token(d, "root", ["admin"])
    before = admin_notices(d, admin)
    r = call(d, "POST", "/v1/admin/notices", admin, data=body, direct=True,
             headers={"Content-Type": "application/json"})
    assert_problem(r, 400, pointer)
    assert admin_notices(d, admin) == before


@pytest.mark.parametrize("change,pointer", [
    ({"kind": "weather"}, "/kind"),
    ({"severity": 3}, "/severity"),
    ({"title": ""}, "/title"),
    ({"title": "x" * 201}, "/title"),
    ({"title": "tab\u0001"}, "/title"),
    ({"body": "y" * 8001}, "/body"),
    ({"starts_at": "tomorrow"}, "/starts_at"),
    ({"starts_at": "2030-02-30T00:00:00Z"}, "/starts_at"),
    ({"colour": "red"}, "/colour"),
    ({"title": ["a"]}, "/title"),
    ({"starts_at": "2030-01-02T00:00:00Z", "ends_at": "2030-01-01T00:00:00Z"}, "/ends_at"),
])
def test_invalid_fields_named_by_pointer(tenantd, change, pointer):
    d = tenantd()
    admin = token(d, "root", ["admin"])
    before = admin_notices(d, admin)
    body = dict(NOTICE, **change)
    assert_problem(call(d, "POST", "/v1/admin/notices", admin, json=body, direct=True), 400, pointer)
    assert admin_notices(d, admin) == before
    n = call(d, "POST", "/v1/admin/notices", admin, json=NOTICE).json()
    assert_problem(call(d, "PATCH", "/v1/admin/notices/" + n["id"], admin, json=change,
                        direct=True), 400, pointer)
    assert [x for x in admin_notices(d, admin) if x["id"] == n["id"]] == [n]


def test_missing_fields_and_unknown_notice(tenantd):
    d = tenantd()
    admin = token(d, "root", ["admin"])
    doc = assert_problem(call(d, "POST", "/v1/admin/notices", admin, json={}, direct=True), 400)
    assert {e["pointer"] for e in doc["errors"]} == {"/kind", "/severity", "/title"}
    assert_problem(call(d, "PATCH", "/v1/admin/notices/n_" + "0" * 32, admin,
                        json={"title": "x"}), 404)
    assert_problem(call(d, "POST", "/v1/admin/notices", admin, data=json.dumps(NOTICE),
                        headers={"Content-Type": "text/plain"}, direct=True), 415)
    assert_problem(call(d, "GET", "/v1/notices?since=yesterday", admin, direct=True), 400)


def test_tenantctl_notice_commands(tenantd):
    d = tenantd()
    r = d.tenantctl("--json", "notice", "publish", "--kind", "incident", "--severity",
                    "critical", "--title", "Database outage", "--body", "Investigating.")
    assert r.returncode == 0, r.stderr
    n = json.loads(r.stdout)
    assert n["source"] == "operator" and n["kind"] == "incident"
    r = d.tenantctl("notice", "update", n["id"], "--severity", "warning", "--body", "Resolved.")
    assert r.returncode == 0, r.stderr
    r = d.tenantctl("notice", "list")
    assert r.returncode == 0 and n["id"] in r.stdout and "warning" in r.stdout
    r = d.tenantctl("notice", "publish", "--kind", "weather", "--severity", "info", "--title", "x")
    assert r.returncode == 1 and "kind" in r.stderr
    r = d.tenantctl("notice", "deliveries")
    assert r.returncode == 0 and "pending 0, delivered 0, failed 0" in r.stdout


def test_unclean_shutdown_notice(tenantd):
    d = tenantd()
    admin = token(d, "root", ["admin"])
    assert not [n for n in admin_notices(d, admin) if "unclean" in n["title"]]
    d.stop()
    d.start()       # a clean stop: no notice
    admin = token(d, "root", ["admin"])
    assert not [n for n in admin_notices(d, admin) if "unclean" in n["title"]]
    d.proc.send_signal(signal.SIGKILL)
    d.proc.wait()
    d.start()
    admin = token(d, "root", ["admin"])
    got = [n for n in admin_notices(d, admin) if "unclean" in n["title"]]
    assert len(got) == 1 and got[0]["kind"] == "incident" and got[0]["source"] == "system"


def test_tls_certificate_change_on_reload(tenantd, tmp_path):
    from conftest import Certs
    d = tenantd()
    admin = token(d, "root", ["admin"])
    assert not [n for n in admin_notices(d, admin) if n["title"] == "TLS certificate changed"]
    other = Certs(tmp_path / "other")
    conf = dict(d.conf, tls={"certificate": str(other.cert), "key": str(other.key)})
    d.write_config(conf)
    r = d.tenantctl("reload")
    assert r.returncode == 0, r.stderr
    r = call(d, "GET", "/v1/notices", admin, verify=str(other.ca), direct=True)
    notices = r.json()["notices"]
    got = [n for n in notices if n["title"] == "TLS certificate changed"]
    assert len(got) == 1 and got[0]["kind"] == "security"
    # the test certificates expire within 14 days: warned once per certificate
    soon = [n for n in notices if n["title"] == "TLS certificate expires soon"]
    assert len(soon) == 2


def test_storage_above_85_percent(tenantd):
    d = tenantd({"storage": {"max_size": "512KiB"}})
    admin = token(d, "root", ["admin"])
    big = dict(NOTICE, body="x" * 8000)

    def use():
        st = json.loads(d.tenantctl("--json", "keys", "status").stdout)["store"]
        return st["used"] / st["max_size"]
    while use() < 0.87:     # short of full, so the notice itself fits
        for i in range(4):
            assert call(d, "POST", "/v1/admin/notices", admin, json=big).status_code == 201
    d.stop()
    d.start()       # checked at start (and every 5 minutes)
    admin = token(d, "root", ["admin"])
    r = call(d, "GET", "/v1/notices?since=2000-01-01T00:00:00Z", admin)
    got = [n for n in r.json()["notices"] if n["title"] == "Storage above 85 %"]
    assert len(got) == 1 and got[0]["source"] == "system"


def webhook_conf(tmp_path, receivers, retry_for="1h", backoff="500ms"):
    hooks = []
    for i, (rcv, extra) in enumerate(receivers):
        h = {"url": rcv.url, "format": rcv.fmt, "ca_file": str(rcv.certs.ca)}
        if rcv.secret is not None:
            f = tmp_path / ("secret%d" % i)
            f.write_bytes(rcv.secret + b"\n")
            f.chmod(0o600)
            h["secret_file"] = str(f)
        h.update(extra)
        hooks.append(h)
    return {"notifications": {"webhooks": hooks, "retry_for": retry_for,
                              "retry_backoff": backoff}}


def test_webhook_json_signed_and_filtered(tenantd, certs, tmp_path):
    all_kinds = Receiver(certs, secret=b"s3cret-s3cret-s3cret").start()
    security = Receiver(certs, secret=b"another-secret-0123").start()
    try:
        d = tenantd(webhook_conf(tmp_path, [(all_kinds, {}),
                                            (security, {"kinds": ["security"]})]))
        admin = token(d, "root", ["admin"])
        n = call(d, "POST", "/v1/admin/notices", admin, json=NOTICE).json()
        got = all_kinds.wait(lambda x: x["json"] and x["json"]["notice"]["id"] == n["id"])[0]
        assert got["signature_ok"], got["headers"]
        assert got["headers"]["Tenantd-Event"] == "notice.published"
        assert got["json"]["event"] == "notice.published"
        assert got["json"]["notice"] == n
        assert got["json"]["delivery_id"] == got["headers"]["Tenantd-Delivery"]
        tampered = got["body"].replace(b"Planned", b"Unplanned")
        from webhook_receiver import check_signature
        assert not check_signature(all_kinds.secret, got["headers"]["Tenantd-Signature"], tampered)
        m = call(d, "PATCH", "/v1/admin/notices/" + n["id"], admin, json={"title": "Moved"}).json()
        all_kinds.wait(lambda x: x["json"] and x["json"]["event"] == "notice.updated"
                       and x["json"]["notice"] == m)
        # the security-only hook got none of it: its kinds filter
        time.sleep(1)
        assert not [x for x in security.snapshot()
                    if x["json"] and x["json"]["notice"]["id"] == n["id"]]
        r = d.tenantctl("--json", "notice", "deliveries")
        counts = json.loads(r.stdout)["counts"]
        assert counts["delivered"] >= 2 and counts["failed"] == 0
    finally:
        all_kinds.stop()
        security.stop()


def test_webhook_retries_until_delivered(tenantd, certs, tmp_path):
    rcv = Receiver(certs, secret=b"s3cret-s3cret-s3cret").start()
    rcv.mode = "fail"
    try:
        d = tenantd(webhook_conf(tmp_path, [(rcv, {})]))
        admin = token(d, "root", ["admin"])
        n = call(d, "POST", "/v1/admin/notices", admin, json=NOTICE).json()
        ours = lambda mode: lambda x: x["mode"] == mode and x["json"]["notice"]["id"] == n["id"]
        rcv.wait(ours("fail"))
        r = json.loads(d.tenantctl("--json", "notice", "deliveries").stdout)
        mine = [x for x in r["deliveries"] if x["notice_id"] == n["id"]]
        assert mine and mine[0]["state"] == "pending"
        rcv.mode = "429"
        rcv.wait(ours("429"))
        rcv.mode = "ok"
        rcv.wait(ours("ok"))

        def delivered():
            r = json.loads(d.tenantctl("--json", "notice", "deliveries").stdout)
            return [x for x in r["deliveries"] if x["notice_id"] == n["id"]
                    and x["state"] == "delivered"]
        got = wait_for(delivered, what="delivered state")[0]
        assert got["attempts"] >= 3 and got["last_status"] == 200
    finally:
        rcv.stop()


def test_webhook_outbox_survives_restart_then_fails(tenantd, certs, tmp_path):
    rcv = Receiver(certs, secret=b"s3cret-s3cret-s3cret").start()
    rcv.mode = "fail"
    try:
        d = tenantd(webhook_conf(tmp_path, [(rcv, {})], retry_for="10s", backoff="1s"))
        admin = token(d, "root", ["admin"])
        n = call(d, "POST", "/v1/admin/notices", admin, json=NOTICE).json()
        rcv.wait(lambda x: x["json"]["notice"]["id"] == n["id"])
        d.stop()
        seen = len(rcv.snapshot())
        d.start()       # the pending delivery is still in the outbox
        rcv.wait(lambda x: x["json"]["notice"]["id"] == n["id"] and
                 rcv.snapshot().index(x) >= seen)

        def failed():
            r = json.loads(d.tenantctl("--json", "notice", "deliveries").stdout)
            return [x for x in r["deliveries"] if x["notice_id"] == n["id"]
                    and x["state"] == "failed"]
        got = wait_for(failed, timeout=90, what="failed state")[0]
        assert got["last_error"] == "HTTP 500"
        count = len(rcv.snapshot())
        time.sleep(3)
        assert len(rcv.snapshot()) == count      # no retries after failed
    finally:
        rcv.stop()


def test_webhook_teams_adaptive_card(tenantd, certs, tmp_path):
    rcv = Receiver(certs, fmt="teams").start()
    try:
        d = tenantd(webhook_conf(tmp_path, [(rcv, {})]))
        admin = token(d, "root", ["admin"])
        call(d, "POST", "/v1/admin/notices", admin, json=NOTICE)
        got = rcv.wait(lambda x: NOTICE["title"] in json.dumps(x["json"]))[0]
        assert got["problems"] == [], got["problems"]
        for other in rcv.snapshot():        # tenantd's own notices too
            assert other["problems"] == [], other["problems"]
        card = got["json"]["attachments"][0]["content"]
        texts = [b.get("text") for b in card["body"]]
        assert NOTICE["title"] in texts and NOTICE["body"] in texts
        assert "Tenantd-Signature" not in got["headers"]
    finally:
        rcv.stop()


def test_webhook_config_checked(tenantd):
    d = tenantd(start=False)
    conf = dict(d.conf, notifications={"webhooks": [{"url": "http://example.invalid/x"}]})
    d.write_config(conf)
    from conftest import run_tenantd
    r = run_tenantd("-n", "-c", str(d.conf_path))
    assert r.returncode == 1
    assert "https://" in r.stderr and "secret_file" in r.stderr


def test_health_through_the_document(tenantd):
    d = tenantd()
    assert call(d, "GET", "/livez").status_code == 200
    r = call(d, "GET", "/readyz")
    assert r.status_code == 200 and r.json()["status"] == "ready"
    assert call(d, "GET", "/v1/me", token(d, "carol")).status_code == 200
