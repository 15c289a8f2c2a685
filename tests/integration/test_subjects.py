"""Data-subject rights and re-identification through a real vault (child
mode): export, erase with its receipt, reidentify; admin only, audited;
503 with nothing changed when the vault is down."""
import json

from conftest import TENANTD_VAULT, to_yaml
from datahelp import (assert_problem, audit_records, call, oid, poll,
                      post_events, pseudonym, summary)

EV = {"name": "viewer.open", "app": "ifc-viewer"}


def vault_conf(tmp_path):
    conf = tmp_path / "vault-child.yaml"
    conf.write_text(to_yaml({"state_dir": str(tmp_path / "vault-state"),
                             "listen": str(tmp_path / "unused.sock")}) + "\n")
    return {"vault": {"mode": "child", "config": str(conf),
                      "program": TENANTD_VAULT,
                      "address": str(tmp_path / "vsock")}}


def reidentify(d, tok, p, reason="support case 4711: wrong totals", **kw):
    return call(d, "POST", "/v1/admin/reidentify", tok,
                json={"pseudonym": p, "reason": reason}, **kw)


def with_vault(tenantd, tmp_path):
    d = tenantd(vault_conf(tmp_path))
    poll(lambda: json.loads(d.tenantctl("--json", "vault", "status").stdout)["connected"],
         what="vault connected")
    return d


def seed(d, auth_token):
    alice, bob = auth_token(d, "alice"), auth_token(d, "bob")
    assert post_events(d, alice, [EV, EV]).status_code == 202
    assert post_events(d, bob, [EV]).status_code == 202
    assert call(d, "PUT", "/v1/settings/user/layout", alice,
                json={"value": {"cols": 3}}).status_code == 201
    assert call(d, "PUT", "/v1/settings/user/layout", bob,
                json={"value": {"cols": 1}}).status_code == 201
    return alice, bob


def test_export(tenantd, auth_token, tmp_path):
    d = with_vault(tenantd, tmp_path)
    alice, bob = seed(d, auth_token)
    admin = auth_token(d, "root", ["admin"])
    r = call(d, "GET", "/v1/admin/subjects/%s/export" % oid(alice).upper(), admin)
    assert r.status_code == 200, r.text
    doc = r.json()
    p = pseudonym(d, alice)
    assert doc["subject"] == {"oid": oid(alice), "pseudonym": p}
    assert [e["name"] for e in doc["events"]] == ["viewer.open"] * 2
    assert [(s["key"], s["value"]) for s in doc["settings"]] == [("layout", {"cols": 3})]
    assert doc["audit"] and all(a["actor"] == p for a in doc["audit"])
    assert {a["action"] for a in doc["audit"]} >= {"events.ingest", "settings.put"}
    exp = audit_records(d, "subject.export")
    assert len(exp) == 1 and exp[0]["target"] == p
    assert exp[0]["actor"] == pseudonym(d, admin)
    assert_problem(call(d, "GET", "/v1/admin/subjects/%s/export" % oid(alice), bob,
                        direct=True), 403)
    assert_problem(call(d, "GET", "/v1/admin/subjects/not-a-guid/export", admin,
                        direct=True), 400)


def test_reidentify(tenantd, auth_token, tmp_path):
    d = with_vault(tenantd, tmp_path)
    alice, bob = seed(d, auth_token)
    admin = auth_token(d, "root", ["admin"])
    p = pseudonym(d, alice)
    # The vault learned alice on her first request (queued, then delivered).
    r = poll(lambda: (lambda r: r if r.status_code == 200 else None)(
        reidentify(d, admin, p)), what="identity in the vault")
    assert r.json()["identity"] == {"oid": oid(alice), "upn": "alice"}
    assert r.json()["pseudonym"] == p
    rec = [a for a in audit_records(d, "subject.reidentify") if a["outcome"] == "ok"]
    assert rec and rec[-1]["target"] == p
    assert rec[-1]["details"]["reason"] == "support case 4711: wrong totals"
    assert_problem(reidentify(d, admin, p, reason="too short", direct=True), 400, "/reason")
    assert_problem(reidentify(d, admin, "alice", direct=True), 400, "/pseudonym")
    assert_problem(reidentify(d, admin, "p_" + "a" * 26), 404)
    assert_problem(reidentify(d, bob, p, direct=True), 403)
    r = call(d, "POST", "/v1/admin/reidentify", admin, direct=True,
             json={"pseudonym": p, "reason": "x" * 20, "upn": "alice"})
    assert_problem(r, 400, "/upn")


def test_erase(tenantd, auth_token, tmp_path):
    d = with_vault(tenantd, tmp_path)
    alice, bob = seed(d, auth_token)
    admin = auth_token(d, "root", ["admin"])
    p = pseudonym(d, alice)
    poll(lambda: reidentify(d, admin, p).status_code == 200, what="identity in the vault")
    before = summary(d, admin)["viewer.open"]
    assert (before["count"], before["users"]) == (3, 2)
    r = call(d, "POST", "/v1/admin/subjects/%s/erase" % oid(alice), admin)
    assert r.status_code == 200, r.text
    receipt = r.json()
    assert receipt["pseudonym"] == p and receipt["vault"] == "forgotten"
    assert receipt["deleted"] == {"events": 2, "settings": 1, "usage_markers": 1}
    doc = call(d, "GET", "/v1/admin/subjects/%s/export" % oid(alice), admin).json()
    assert doc["events"] == [] and doc["settings"] == []
    assert_problem(reidentify(d, admin, p), 404)
    after = summary(d, admin)["viewer.open"]
    assert (after["count"], after["users"]) == (3, 1)
    # Bob is untouched.
    assert call(d, "GET", "/v1/settings/user/layout", bob).json()["value"] == {"cols": 1}
    assert len(call(d, "GET", "/v1/admin/subjects/%s/export" % oid(bob),
                    admin).json()["events"]) == 1
    rec = audit_records(d, "subject.erase")
    assert rec[-1]["target"] == p and rec[-1]["details"]["events"] == 2
    # Erasing again is harmless; a body must be empty.
    r = call(d, "POST", "/v1/admin/subjects/%s/erase" % oid(alice), admin, json={})
    assert r.json()["deleted"] == {"events": 0, "settings": 0, "usage_markers": 0}
    assert_problem(call(d, "POST", "/v1/admin/subjects/%s/erase" % oid(bob), admin,
                        json={"force": True}, direct=True), 400, "/force")
    assert_problem(call(d, "POST", "/v1/admin/subjects/%s/erase" % oid(bob), bob,
                        direct=True), 403)
    # Alice comes back: she is registered with the vault again.
    assert post_events(d, alice, [EV]).status_code == 202
    poll(lambda: reidentify(d, admin, p).status_code == 200, what="re-registered")


def test_vault_down_changes_nothing(tenantd, auth_token):
    d = tenantd()      # an external vault that nobody runs
    alice, bob = seed(d, auth_token)
    admin = auth_token(d, "root", ["admin"])
    p = pseudonym(d, alice)
    doc = assert_problem(reidentify(d, admin, p), 503)
    assert "vault" in doc["detail"]
    assert_problem(call(d, "POST", "/v1/admin/subjects/%s/erase" % oid(alice), admin), 503)
    doc = call(d, "GET", "/v1/admin/subjects/%s/export" % oid(alice), admin).json()
    assert len(doc["events"]) == 2 and len(doc["settings"]) == 1
    failed = audit_records(d, "subject.erase")
    assert failed and failed[-1]["outcome"] == "error" and failed[-1]["status"] == 503
