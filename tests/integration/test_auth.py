"""Authentication end to end: tenantd validates tokens minted here with
python3-jwt against keys it fetched from fake_entra.py (a fake Entra ID
authority over TLS on loopback). Every refused token must be refused for
the reason the test means, read back from tenantd_auth_failures_total."""
import base64
import concurrent.futures
import hashlib
import hmac
import json
import re
import time
import uuid

import pytest
import requests
from cryptography.hazmat.primitives import serialization

from conftest import TENANT_ID, Daemon, run_tenantd, to_yaml
from fake_entra import (FakeEntra, SPFX_CLIENT, TEAMS_CLIENT, V1_APP_ID_URI,
                        V2_CLIENT_ID)

OTHER_TENANT = "11111111-2222-3333-4444-555555555555"
DEADLINE = 30


def entra_auth(fe):
    return {"auth": {
        "provider": "entra",
        "authority": fe.authority,
        "ca_file": fe.ca_file,
        "audiences": [V1_APP_ID_URI, V2_CLIENT_ID],
        "required_scopes": ["user_impersonation", "access_as_user"],
        "roles": {"admin": ["Tenantd.Admin"], "auditor": ["Tenantd.Auditor"]},
        "clock_skew": "120s",
    }, "http": {"workers": 2, "max_header_size": "64KiB"}}


def b64(data):
    if isinstance(data, (dict, list)):
        data = json.dumps(data).encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def raw_token(header, claims, signature=b""):
    return "%s.%s.%s" % (b64(header), b64(claims), b64(signature) if signature else "")


def wait_for(pred, what, timeout=DEADLINE):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError("not within %ss: %s" % (timeout, what))


def failures(d):
    """{reason: count} from /metrics."""
    text = d.get("/metrics").text
    return {m.group(1): int(m.group(2)) for m in re.finditer(
        r'^tenantd_auth_failures_total\{reason="([a-z0-9_]+)"\} (\d+)$', text, re.M)}


def keys_state(d):
    checks = d.get("/readyz").json()["checks"]
    return {c["name"]: c for c in checks}["signing_keys"]["detail"]


def me(d, token=None, path="/v1/me", **kw):
    headers = kw.pop("headers", {})
    if token is not None:
        headers["Authorization"] = "Bearer " + token
    return d.get(path, headers=headers, **kw)


def assert_refused(d, token, reason, path="/v1/me", headers=None):
    before = failures(d).get(reason, 0)
    r = me(d, token, path, headers=headers or {})
    assert r.status_code == 401, (r.status_code, r.text)
    assert r.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    problem = r.json()
    assert problem["status"] == 401
    assert problem["detail"] == "a valid bearer token is required"
    assert r.headers["Content-Type"] == "application/problem+json"
    after = failures(d).get(reason, 0)
    assert after == before + 1, (reason, failures(d))


def start_entra_daemon(tmp_path, certs, fe, name="d", overrides=None):
    conf = entra_auth(fe)
    conf.update(overrides or {})
    d = Daemon(tmp_path / name, certs, conf)
    d.start()
    wait_for(lambda: keys_state(d) == "fresh", "keys fresh")
    return d


# --- fixtures ----------------------------------------------------------------

@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    fe = FakeEntra(TENANT_ID, str(tmp_path_factory.mktemp("entra")))
    yield fe
    fe.stop()


@pytest.fixture(scope="module")
def shared(tmp_path_factory, certs, fake):
    """One daemon for the tests that do not change the authority."""
    d = start_entra_daemon(tmp_path_factory.mktemp("shared"), certs, fake)
    yield d
    d.stop()
    d.check_sanitizers()


@pytest.fixture
def own_fake(tmp_path):
    fe = FakeEntra(TENANT_ID, str(tmp_path / "entra"))
    yield fe
    fe.stop()


@pytest.fixture
def daemons():
    started = []
    yield started
    for d in started:
        if d.proc is not None and d.proc.poll() is None:
            d.stop()
        d.check_sanitizers()


# --- accepted ----------------------------------------------------------------

def test_v1_token_accepted(shared, fake):
    token = fake.token(version=1)
    claims = fake.claims(1)
    assert claims["aud"] == V1_APP_ID_URI and claims["scp"] == "user_impersonation"
    r = me(shared, token)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_version"] == 1
    assert body["app_id"] == SPFX_CLIENT
    assert body["roles"] == []
    assert "upn" not in body and "user@contoso.example" not in r.text


def test_v2_token_accepted(shared, fake):
    r = me(shared, fake.token(version=2, claims={"roles": ["Tenantd.Auditor"]}))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_version"] == 2
    assert body["app_id"] == TEAMS_CLIENT
    assert body["roles"] == ["auditor"]
    assert "preferred_username" not in body and "user@contoso.example" not in r.text


def test_same_user_same_pseudonym(shared, fake):
    oid = str(uuid.uuid4())
    a = me(shared, fake.token(version=2, claims={"oid": oid})).json()
    b = me(shared, fake.token(version=1, claims={"oid": oid})).json()
    c = me(shared, fake.token(version=2)).json()
    assert re.fullmatch(r"p_[a-z2-7]{26}", a["pseudonym"]), a
    assert a["pseudonym"] == b["pseudonym"]
    assert a["pseudonym"] != c["pseudonym"]
    assert oid not in json.dumps(a)


def test_cache_hit_skips_signature_check(shared, fake):
    token = fake.token()

    def checks():
        text = shared.get("/metrics").text
        return int(re.search(r"^tenantd_auth_signature_checks_total (\d+)$",
                             text, re.M).group(1))
    assert me(shared, token).status_code == 200
    n = checks()
    for _ in range(5):
        assert me(shared, token).status_code == 200
    assert checks() == n


# --- refused: 401 ------------------------------------------------------------

def test_no_token(shared):
    assert_refused(shared, None, "missing")


def test_not_bearer(shared, fake):
    assert_refused(shared, None, "scheme",
                   headers={"Authorization": "Basic " + b64(b"alice:secret")})


def test_alg_none_without_signature(shared, fake):
    assert_refused(shared, raw_token({"alg": "none", "typ": "JWT", "kid": fake.kid},
                                     fake.claims(2)), "malformed")


def test_alg_none_with_signature(shared, fake):
    assert_refused(shared, raw_token({"alg": "none", "typ": "JWT", "kid": fake.kid},
                                     fake.claims(2), b"signature"), "alg")


def test_hs256_keyed_with_public_key_pem(shared, fake):
    pem = fake.key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    header = {"alg": "HS256", "typ": "JWT", "kid": fake.kid}
    signing_input = "%s.%s" % (b64(header), b64(fake.claims(2)))
    sig = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
    assert_refused(shared, signing_input + "." + b64(sig), "alg")


def test_rs256_by_unknown_key_under_known_kid(shared, fake):
    assert_refused(shared, fake.token(key=fake.new_key(), kid=fake.kid), "signature")


def test_unknown_kid(shared, fake):
    assert_refused(shared, fake.token(kid="no-such-kid-" + uuid.uuid4().hex),
                   "unknown_kid")


def test_wrong_tid(shared, fake):
    assert_refused(shared, fake.token(claims={"tid": OTHER_TENANT}), "tenant")


def test_v1_issuer_with_ver_2(shared, fake):
    assert_refused(shared, fake.token(version=2, claims={"iss": fake.issuer(1)}),
                   "issuer")


def test_v2_issuer_with_ver_1(shared, fake):
    assert_refused(shared, fake.token(version=1, claims={"iss": fake.issuer(2)}),
                   "issuer")


def test_other_tenants_issuer(shared, fake):
    iss = fake.issuer(2).replace(TENANT_ID, OTHER_TENANT)
    assert_refused(shared, fake.token(claims={"iss": iss}), "issuer")


def test_foreign_audience(shared, fake):
    assert_refused(shared, fake.token(claims={"aud": "api://someone-else"}), "audience")


def test_expired_beyond_skew(shared, fake):
    now = int(time.time())
    assert_refused(shared, fake.token(claims={"iat": now - 4000, "nbf": now - 4000,
                                              "exp": now - 200}), "expired")


def test_expired_within_skew_accepted(shared, fake):
    now = int(time.time())
    r = me(shared, fake.token(claims={"iat": now - 4000, "nbf": now - 4000,
                                      "exp": now - 30}))
    assert r.status_code == 200, r.text


def test_not_yet_valid_beyond_skew(shared, fake):
    now = int(time.time())
    assert_refused(shared, fake.token(claims={"nbf": now + 200}), "not_yet_valid")


def test_no_oid(shared, fake):
    assert_refused(shared, fake.token(drop=("oid",)), "oid")


def test_no_scp_and_no_roles(shared, fake):
    assert_refused(shared, fake.token(drop=("scp",)), "scope")


def test_app_only_token_not_allowed(shared, fake):
    assert_refused(shared, fake.token(drop=("scp",), claims={"roles": ["Tenantd.Admin"]}),
                   "app_token")


@pytest.mark.parametrize("param,value", [
    ("jku", "https://attacker.example/keys"),
    ("x5u", "https://attacker.example/cert.pem"),
    ("jwk", {"kty": "RSA", "n": "AQAB", "e": "AQAB"}),
    ("crit", ["exp"]),
])
def test_forbidden_header_parameter(shared, fake, param, value):
    assert_refused(shared, fake.token(headers={param: value}), "header_param")


def test_five_part_token(shared, fake):
    assert_refused(shared, fake.token() + ".e30.e30", "malformed")


def test_oversized_token(shared, fake):
    token = fake.token(claims={"pad": "x" * 17000})
    assert len(token) > 16384
    assert_refused(shared, token, "too_large")


def test_bad_base64(shared, fake):
    h, p, s = fake.token().split(".")
    assert_refused(shared, "%s.%s.%s" % (h, p.replace("-", "+", 1) + "+", s), "base64")


def test_header_not_json(shared, fake):
    _, p, s = fake.token().split(".")
    assert_refused(shared, "%s.%s.%s" % (b64(b"not json"), p, s), "header_json")


def test_token_in_query_string(shared, fake):
    token = fake.token()
    assert_refused(shared, None, "query_token", path="/v1/me?access_token=" + token)
    # the same token in the header is fine
    assert me(shared, token).status_code == 200


# --- roles: 403 --------------------------------------------------------------

def test_insufficient_role(shared, fake):
    user = fake.token()
    auditor = fake.token(claims={"roles": ["Tenantd.Auditor"]})
    admin = fake.token(claims={"roles": ["Tenantd.Admin"]})
    r = me(shared, user, "/v1/auth/keys")
    assert r.status_code == 403 and r.json()["status"] == 403, r.text
    assert me(shared, auditor, "/v1/auth/keys").status_code == 200
    assert me(shared, admin, "/v1/auth/keys").status_code == 200
    url = shared.url("/v1/auth/refresh")
    r = requests.post(url, headers={"Authorization": "Bearer " + auditor},
                      verify=str(shared.certs.ca), timeout=10)
    assert r.status_code == 403, r.text


def test_public_routes_need_no_token(shared):
    assert shared.get("/livez").status_code == 200
    assert shared.get("/readyz").status_code == 200
    assert shared.get("/metrics").status_code == 200
    r = requests.options(shared.url("/v1/me"), verify=str(shared.certs.ca), timeout=10,
                         headers={"Origin": "https://contoso.sharepoint.com",
                                  "Access-Control-Request-Method": "GET",
                                  "Access-Control-Request-Headers": "authorization"})
    assert r.status_code == 204
    assert "authorization" in r.headers["Access-Control-Allow-Headers"]
    # the dev discovery documents exist only with the local provider
    assert shared.get("/v1/dev/jwks").status_code == 404


# --- keys: rotation, outage, restart, throttling ------------------------------

def test_rotated_key_refreshes(tmp_path, certs, own_fake, daemons):
    d = start_entra_daemon(tmp_path, certs, own_fake)
    daemons.append(d)
    assert me(d, own_fake.token()).status_code == 200
    before = own_fake.counts()["jwks_v2"]
    kid = own_fake.rotate(keep_old=True)
    token = own_fake.token()
    assert json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))["kid"] == kid
    r = me(d, token)
    assert r.status_code == 200, r.text
    assert own_fake.counts()["jwks_v2"] == before + 1


def test_valid_token_while_authority_down(tmp_path, certs, own_fake, daemons):
    d = start_entra_daemon(tmp_path, certs, own_fake)
    daemons.append(d)
    own_fake.down()
    assert me(d, own_fake.token()).status_code == 200
    # an unknown kid now cannot be fetched: refused, and the keys stay
    assert_refused(d, own_fake.token(kid="gone"), "unknown_kid")
    assert me(d, own_fake.token()).status_code == 200


def test_restart_while_authority_down(tmp_path, certs, own_fake, daemons):
    d = start_entra_daemon(tmp_path, certs, own_fake)
    daemons.append(d)
    d.stop()
    own_fake.down()
    d.start()
    wait_for(lambda: keys_state(d).startswith("stale"), "stored keys loaded")
    assert me(d, own_fake.token()).status_code == 200
    assert d.get("/readyz").status_code == 200       # degraded, not failed


def test_unknown_kid_flood_is_throttled(tmp_path, certs, own_fake, daemons):
    d = start_entra_daemon(tmp_path, certs, own_fake)
    daemons.append(d)
    before = own_fake.counts()
    tokens = [own_fake.token(kid="flood-%d" % i) for i in range(40)]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda t: me(d, t).status_code, tokens))
    assert codes == [401] * len(tokens)
    for t in tokens[:10]:
        assert me(d, t).status_code == 401
    after = own_fake.counts()
    # one refresh: each key set fetched once, for the whole flood
    assert after["jwks_v2"] - before["jwks_v2"] == 1, (before, after)
    assert after["jwks_v1"] - before["jwks_v1"] == 1, (before, after)


def test_no_keys_yet_is_not_ready(tmp_path, certs, own_fake, daemons):
    own_fake.down()
    d = Daemon(tmp_path / "d", certs, entra_auth(own_fake))
    daemons.append(d)
    d.start()
    assert d.get("/readyz").status_code == 503
    assert keys_state(d) == "no signing keys yet"
    own_fake.up()
    # the next retry (10 s backoff) brings the keys
    wait_for(lambda: keys_state(d) == "fresh", "keys fetched after the outage", 60)
    assert me(d, own_fake.token()).status_code == 200


# --- the local provider -------------------------------------------------------

def test_local_provider_token_and_me(tenantd, auth_token):
    d = tenantd()
    token = auth_token(d, user="alice", roles=["admin"])
    assert re.fullmatch(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+", token)
    r = me(d, token)
    assert r.status_code == 200, r.text
    assert r.json()["roles"] == ["admin"]
    assert r.json()["token_version"] == 2
    assert "alice" not in r.text
    plain = auth_token(d, user="bob")
    assert me(d, plain).json()["roles"] == []
    assert me(d, plain, "/v1/auth/keys").status_code == 403
    assert me(d, token, "/v1/auth/keys").status_code == 200
    meta = d.get("/.well-known/openid-configuration").json()
    assert meta["jwks_uri"].endswith("/v1/dev/jwks")
    assert len(d.get("/v1/dev/jwks").json()["keys"]) == 1


def test_local_provider_key_is_private(tenantd):
    d = tenantd()
    key = d.dir / "state" / "auth-local-key.pem"
    assert key.exists() and (key.stat().st_mode & 0o777) == 0o600


def test_tenantctl_token_usage_and_errors(tenantd):
    d = tenantd()
    r = d.tenantctl("token")
    assert r.returncode == 2 and r.stdout == ""
    r = d.tenantctl("token", "--user", "alice", "--roles", "root")
    assert r.returncode == 1 and "unknown role" in r.stderr and r.stdout == ""
    r = d.tenantctl("token", "--user", "alice", "--ttl", "2d")
    assert r.returncode == 1 and "ttl" in r.stderr
    r = d.tenantctl("token", "--user", "alice", "--ttl", "30m")
    assert r.returncode == 0 and r.stdout.count(".") == 2


def test_tenantctl_token_refused_with_entra(shared):
    r = shared.tenantctl("token", "--user", "alice")
    assert r.returncode == 1 and "provider: local" in r.stderr


def test_local_provider_refused_on_non_loopback(tmp_path, certs):
    d = Daemon(tmp_path / "d", certs, {
        "listen": [{"address": "127.0.0.1:0"}, {"address": "0.0.0.0:0"}]})
    r = run_tenantd("-n", "-c", str(d.conf_path))
    assert r.returncode == 1
    text = d.conf_path.read_text().splitlines()
    line = next(i for i, l in enumerate(text, 1) if l.strip().startswith("provider:"))
    col = text[line - 1].index("provider:") + len("provider: ") + 1
    assert r.stderr == ("%s:%d:%d: auth.provider: local is for development and needs "
                        "loopback listeners only, but listen[1] is 0.0.0.0:0\n"
                        % (d.conf_path, line, col)), r.stderr


def test_entra_needs_audiences(tmp_path, certs):
    d = Daemon(tmp_path / "d", certs, {"auth": {"provider": "entra"}})
    r = run_tenantd("-n", "-c", str(d.conf_path))
    assert r.returncode == 1
    assert "auth: audiences must list at least one App ID URI or client id" in r.stderr


def test_without_auth_section_every_api_call_is_refused(tmp_path, certs, daemons):
    d = Daemon(tmp_path / "d", certs, {"auth": None})
    daemons.append(d)
    d.start()
    assert "\nauth:" not in d.conf_path.read_text()
    assert d.get("/livez").status_code == 200
    assert d.get("/readyz").status_code == 503
    assert_refused(d, "a.b.c", "not_configured")
