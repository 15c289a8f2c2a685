"""Helpers for the API tests: development tokens and requests."""
import requests


def token(d, user="alice", roles=()):
    """A development token (auth.provider: local) from tenantctl token."""
    args = ["token", "--user", user]
    if roles:
        args += ["--roles", ",".join(roles)]
    r = d.tenantctl(*args)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def call(d, method, path, tok=None, direct=False, **kw):
    headers = dict(kw.pop("headers", {}))
    if tok is not None:
        headers["Authorization"] = "Bearer " + tok
    kw.setdefault("verify", str(d.certs.ca))
    kw.setdefault("timeout", 30)
    return requests.request(method, d.url(path, direct=direct), headers=headers, **kw)


def assert_problem(r, status, pointer=None):
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["Content-Type"].startswith("application/problem+json"), r.headers
    doc = r.json()
    assert doc["status"] == status and doc["type"].startswith("urn:tenantd:problem:")
    if pointer is not None:
        pointers = [e["pointer"] for e in doc.get("errors", [])]
        assert pointer in pointers, doc
    return doc


# Bodies that are not acceptable JSON, each with the pointer blamed.
def malformed_bodies(valid):
    import json
    deep = b"[" * 10000 + b"]" * 10000
    return [
        ("malformed", b'{"kind": ', ""),
        ("deep", deep, ""),
        ("invalid-utf8", b'{"title": "\xff\xfe"}', ""),
        ("nul-raw", json.dumps(valid).encode()[:-1] + b',"x\x00":1}', ""),
        ("nul-escaped", b'{"title": "a\\u0000b"}', ""),
        ("duplicate", b'{"title": "a", "title": "b"}', ""),
        ("huge-int", b'{"seats": 123456789012345678901234567890}', ""),
        ("huge-real", b'{"seats": 1e400}', ""),
        ("not-object", b'[1, 2]', ""),
        ("empty", b'', ""),
    ]
