"""Helpers for the events, settings and data-subject tests."""
import base64
import json
import time

from apihelp import assert_problem, call  # noqa: F401 (re-exported)


def claims(tok):
    """The payload of a token (not verified: tenantd did that)."""
    part = tok.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def oid(tok):
    return claims(tok)["oid"]


def pseudonym(d, tok):
    r = call(d, "GET", "/v1/me", tok)
    assert r.status_code == 200, r.text
    return r.json()["pseudonym"]


def now_iso(offset=0):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + offset))


def today(offset_days=0):
    return time.strftime("%Y-%m-%d", time.gmtime(time.time() + offset_days * 86400))


def post_events(d, tok, events, **kw):
    return call(d, "POST", "/v1/events", tok, json={"events": events}, **kw)


def summary(d, tok, **params):
    q = "&".join("%s=%s" % kv for kv in params.items())
    r = call(d, "GET", "/v1/events/summary" + ("?" + q if q else ""), tok)
    assert r.status_code == 200, r.text
    return {g["key"]: g for g in r.json()["groups"]}


def audit_records(d, action=None):
    args = ["audit", "export", "--format", "json"]
    if action:
        args += ["--action", action]
    r = d.tenantctl(*args)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def poll(fn, timeout=60, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(0.2)
    raise AssertionError("%s not met within %ss" % (what, timeout))
