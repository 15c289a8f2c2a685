"""The license: Ed25519 signatures over the canonical form, tenant and key
checks, states (valid, grace, expired), persistence, bad input."""
import base64
import datetime
import json
import subprocess

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from apihelp import assert_problem, call, malformed_bodies, token
from conftest import TENANT_ID

DAY = datetime.timedelta(days=1)


def iso(t):
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def canonical(lic):
    """What docs/API.md tells vendors to sign."""
    return json.dumps(lic, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def signed(key, **over):
    now = datetime.datetime.now(datetime.timezone.utc)
    lic = {"license_id": "L-2026-0001", "tenant_id": TENANT_ID, "plan": "enterprise",
           "features": ["reports.export", "sso.scim"], "seats": 250,
           "valid_from": iso(now - DAY), "valid_until": iso(now + 100 * DAY)}
    lic.update(over)
    return {"license": lic, "signature": base64.b64encode(key.sign(canonical(lic))).decode()}


def pem(key):
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode()


@pytest.fixture
def vendor(tmp_path):
    key = Ed25519PrivateKey.generate()
    path = tmp_path / "vendor.pub.pem"
    path.write_text(pem(key))
    return key, path


def licensed(tenantd, vendor, **over):
    key, path = vendor
    d = tenantd({"license": dict({"trusted_keys": [str(path)]}, **over)})
    return d, token(d, "root", ["admin"]), token(d, "bob")


def test_unlicensed_then_valid(tenantd, vendor):
    d, admin, user = licensed(tenantd, vendor)
    st = call(d, "GET", "/v1/license", user).json()
    assert st["state"] == "unlicensed" and st["features"] == [] and st["plan"] is None
    doc = signed(vendor[0])
    r = call(d, "PUT", "/v1/admin/license", admin, json=doc)
    assert r.status_code == 200, r.text
    st = call(d, "GET", "/v1/license", user).json()
    assert st["state"] == "valid" and st["plan"] == "enterprise"
    assert st["features"] == ["reports.export", "sso.scim"] and st["seats"] == 250
    assert st["valid_until"] == doc["license"]["valid_until"] and 99 <= st["days_left"] <= 100


def test_kept_across_restart_and_keys(tenantd, vendor, tmp_path):
    d, admin, user = licensed(tenantd, vendor)
    assert call(d, "PUT", "/v1/admin/license", admin, json=signed(vendor[0])).status_code == 200
    d.stop()
    d.start()
    assert call(d, "GET", "/v1/license", token(d, "bob")).json()["state"] == "valid"
    # the vendor key is no longer trusted: the stored license stops counting
    other = Ed25519PrivateKey.generate()
    (tmp_path / "other.pem").write_text(pem(other))
    d.write_config(dict(d.conf, license={"trusted_keys": [pem(other)]}))
    assert d.tenantctl("reload").returncode == 0
    assert call(d, "GET", "/v1/license", token(d, "bob")).json()["state"] == "unlicensed"


def test_wrong_tenant_and_bad_signature(tenantd, vendor):
    d, admin, user = licensed(tenantd, vendor)
    good = signed(vendor[0], plan="basic")
    assert call(d, "PUT", "/v1/admin/license", admin, json=good).status_code == 200
    other_tenant = signed(vendor[0], tenant_id="11111111-2222-3333-4444-555555555555")
    assert_problem(call(d, "PUT", "/v1/admin/license", admin, json=other_tenant), 422,
                   "/license/tenant_id")
    forged = signed(Ed25519PrivateKey.generate())
    assert_problem(call(d, "PUT", "/v1/admin/license", admin, json=forged), 422, "/signature")
    altered = signed(vendor[0])
    altered["license"]["seats"] = 100000
    assert_problem(call(d, "PUT", "/v1/admin/license", admin, json=altered), 422, "/signature")
    assert call(d, "GET", "/v1/license", user).json()["plan"] == "basic"


def test_grace_and_expired(tenantd, vendor):
    d, admin, user = licensed(tenantd, vendor, grace="30d")
    now = datetime.datetime.now(datetime.timezone.utc)
    doc = signed(vendor[0], valid_from=iso(now - 400 * DAY), valid_until=iso(now - 10 * DAY))
    assert call(d, "PUT", "/v1/admin/license", admin, json=doc).status_code == 200
    st = call(d, "GET", "/v1/license", user).json()
    assert st["state"] == "grace" and 19 <= st["days_left"] <= 20
    doc = signed(vendor[0], valid_from=iso(now - 400 * DAY), valid_until=iso(now - 31 * DAY))
    assert call(d, "PUT", "/v1/admin/license", admin, json=doc).status_code == 200
    st = call(d, "GET", "/v1/license", user).json()
    assert st["state"] == "expired" and st["days_left"] == 0
    # an expired license blocks nothing else
    assert call(d, "GET", "/v1/notices", user).status_code == 200


def test_vendor_signs_with_openssl(tenantd, vendor, tmp_path):
    """The documented recipe: openssl pkeyutl over the canonical bytes."""
    key, _ = vendor
    d, admin, user = licensed(tenantd, vendor)
    keyfile = tmp_path / "vendor.key"
    keyfile.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    lic = signed(key)["license"]
    (tmp_path / "lic.json").write_bytes(canonical(lic))
    sig = subprocess.run(["openssl", "pkeyutl", "-sign", "-rawin", "-inkey", str(keyfile),
                          "-in", str(tmp_path / "lic.json")], capture_output=True, check=True).stdout
    doc = {"license": lic, "signature": base64.b64encode(sig).decode()}
    assert call(d, "PUT", "/v1/admin/license", admin, json=doc).status_code == 200


def test_roles(tenantd, vendor):
    d, admin, user = licensed(tenantd, vendor)
    assert_problem(call(d, "PUT", "/v1/admin/license", user, json=signed(vendor[0]),
                        direct=True), 403)
    assert_problem(call(d, "GET", "/v1/license", None, direct=True), 401)


@pytest.mark.parametrize("change,pointer", [
    ({"license_id": ""}, "/license/license_id"),
    ({"plan": "Gold Plan"}, "/license/plan"),
    ({"features": ["ok", "NOT OK"]}, "/license/features/1"),
    ({"features": ["f%d" % i for i in range(65)]}, "/license/features"),
    ({"seats": -1}, "/license/seats"),
    ({"seats": 2 ** 62}, "/license/seats"),
    ({"seats": "10"}, "/license/seats"),
    ({"valid_until": "next year"}, "/license/valid_until"),
    ({"valid_until": "2020-01-01T00:00:00Z"}, "/license/valid_until"),
    ({"tenant_id": "not-a-guid-at-all-no-not-at-all-xxxx"}, "/license/tenant_id"),
    ({"extra": 1}, "/license/extra"),
])
def test_invalid_fields(tenantd, vendor, change, pointer):
    d, admin, user = licensed(tenantd, vendor)
    doc = signed(vendor[0], **change)
    assert_problem(call(d, "PUT", "/v1/admin/license", admin, json=doc, direct=True), 400, pointer)
    assert call(d, "GET", "/v1/license", user).json()["state"] == "unlicensed"


@pytest.mark.parametrize("extra,pointer", [
    ({"signature": "abc"}, "/signature"),
    ({"signature": 5}, "/signature"),
    ({"comment": "x"}, "/comment"),
])
def test_invalid_envelope(tenantd, vendor, extra, pointer):
    d, admin, user = licensed(tenantd, vendor)
    doc = dict(signed(vendor[0]), **extra)
    assert_problem(call(d, "PUT", "/v1/admin/license", admin, json=doc, direct=True), 400, pointer)
    assert call(d, "GET", "/v1/license", user).json()["state"] == "unlicensed"


@pytest.mark.parametrize("name,body,pointer", malformed_bodies({"license": {}}))
def test_malformed_bodies(tenantd, vendor, name, body, pointer):
    d, admin, user = licensed(tenantd, vendor)
    r = call(d, "PUT", "/v1/admin/license", admin, data=body, direct=True,
             headers={"Content-Type": "application/json"})
    assert_problem(r, 400, pointer)
    assert call(d, "GET", "/v1/license", user).json()["state"] == "unlicensed"


def test_oversized_body(tenantd, vendor):
    d, admin, user = licensed(tenantd, vendor)
    doc = signed(vendor[0], plan="p" * 100000)
    r = call(d, "PUT", "/v1/admin/license", admin, json=doc, direct=True)
    assert 400 <= r.status_code < 500
    assert call(d, "GET", "/v1/license", user).json()["state"] == "unlicensed"
