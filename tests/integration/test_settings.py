"""Settings: scopes and roles, strong ETags and conditional writes,
listing with a cursor, value limits, cross-user and cross-scope access."""
import threading

from datahelp import assert_problem, audit_records, call, pseudonym

S = "/v1/settings/"


def put(d, tok, path, value, direct=False, **headers):
    return call(d, "PUT", S + path, tok, json={"value": value}, headers=headers,
                direct=direct)


def get(d, tok, path, direct=False, **headers):
    """direct: past the contract-test proxy (requests that break the
    document on purpose)."""
    return call(d, "GET", S + path, tok, headers=headers, direct=direct)


def test_create_read_update_delete(tenantd, auth_token):
    d = tenantd()
    admin, user = auth_token(d, "root", ["admin"]), auth_token(d, "bob")
    r = put(d, admin, "tenant/theme", {"color": "blue", "size": 3})
    assert r.status_code == 201, r.text
    etag = r.headers["ETag"]
    assert etag.startswith('"') and etag.endswith('"') and r.json()["etag"] == etag
    r = get(d, user, "tenant/theme")
    assert r.status_code == 200 and r.headers["ETag"] == etag
    assert r.json()["value"] == {"color": "blue", "size": 3}
    assert r.json()["scope"] == "tenant" and r.json()["key"] == "theme"
    assert get(d, user, "tenant/theme", **{"If-None-Match": etag}).status_code == 304
    # An existing key changes only with the current ETag.
    assert_problem(put(d, admin, "tenant/theme", 1), 428)
    assert_problem(put(d, admin, "tenant/theme", 1, **{"If-Match": '"nope"'}), 412)
    assert_problem(put(d, admin, "tenant/theme", 1, **{"If-None-Match": "*"}), 412)
    assert_problem(put(d, admin, "tenant/theme", 1, **{"If-Match": "W/" + etag}), 412)
    assert get(d, user, "tenant/theme").json()["value"] == {"color": "blue", "size": 3}
    r = put(d, admin, "tenant/theme", "red", **{"If-Match": etag})
    assert r.status_code == 200, r.text
    etag2 = r.headers["ETag"]
    assert etag2 != etag
    assert get(d, user, "tenant/theme").json()["value"] == "red"
    assert_problem(call(d, "DELETE", S + "tenant/theme", admin), 428)
    assert_problem(call(d, "DELETE", S + "tenant/theme", admin,
                        headers={"If-Match": etag}), 412)
    r = call(d, "DELETE", S + "tenant/theme", admin, headers={"If-Match": etag2})
    assert r.status_code == 204
    assert_problem(get(d, user, "tenant/theme"), 404)
    assert_problem(call(d, "DELETE", S + "tenant/theme", admin,
                        headers={"If-Match": etag2}), 412)
    assert_problem(call(d, "DELETE", S + "tenant/nothing", admin), 404)
    # Create-only.
    assert put(d, admin, "tenant/new", None, **{"If-None-Match": "*"}).status_code == 201
    assert get(d, user, "tenant/new").json()["value"] is None
    acts = [(r["action"], r["target"]) for r in audit_records(d)
            if r["action"].startswith("settings.")]
    assert acts == [("settings.put", "settings/tenant/theme"),
                    ("settings.put", "settings/tenant/theme"),
                    ("settings.delete", "settings/tenant/theme"),
                    ("settings.put", "settings/tenant/new")]


def test_roles_and_scopes(tenantd, auth_token):
    d = tenantd()
    admin, bob = auth_token(d, "root", ["admin"]), auth_token(d, "bob")
    auditor = auth_token(d, "eve", ["auditor"])
    for tok in (bob, auditor):
        assert_problem(put(d, tok, "tenant/k", 1), 403)
        assert_problem(put(d, tok, "site:abc/k", 1), 403)
    assert_problem(get(d, None, "tenant/k", direct=True), 401)
    assert put(d, admin, "site:abc/k", "a").status_code == 201
    assert put(d, admin, "site:def/k", "d").status_code == 201
    assert put(d, admin, "tenant/k", "t").status_code == 201
    assert get(d, bob, "site:abc/k").json()["value"] == "a"
    assert get(d, bob, "site:def/k").json()["value"] == "d"
    assert get(d, bob, "tenant/k").json()["value"] == "t"
    for scope in ("tenants", "site:", "site:a/b", "global", "site:a%2Fk",
                  "t", "site:" + "x" * 129):
        r = get(d, bob, scope + "/k", direct=True)
        assert r.status_code in (400, 404), (scope, r.status_code)
        assert r.headers["Content-Type"].startswith("application/problem+json")
    for key in ("%2E%2E", "a%2Fb", "x" * 129, "caf%C3%A9", "a%20b"):
        assert_problem(get(d, bob, "tenant/" + key, direct=True), 400)
        assert_problem(put(d, admin, "tenant/" + key, 1, direct=True), 400)
    assert_problem(get(d, bob, "tenant/a%00b", direct=True), 404)  # unrouted
    assert [i["key"] for i in get(d, bob, "tenant").json()["items"]] == ["k"]


def test_user_scope_is_the_callers_own(tenantd, auth_token):
    d = tenantd()
    alice, bob = auth_token(d, "alice"), auth_token(d, "bob")
    assert put(d, alice, "user/layout", {"cols": 2}).status_code == 201
    assert get(d, alice, "user/layout").json()["value"] == {"cols": 2}
    assert_problem(get(d, bob, "user/layout"), 404)
    assert put(d, bob, "user/layout", {"cols": 9}).status_code == 201
    assert get(d, alice, "user/layout").json()["value"] == {"cols": 2}
    p = pseudonym(d, alice)
    for scope in ("user:" + p, "user:alice", "users", "user:"):
        assert_problem(get(d, bob, scope + "/layout", direct=True), 403)
        assert_problem(put(d, bob, scope + "/layout", 1, direct=True), 403)
    # Bob's list shows his key only.
    items = get(d, bob, "user").json()["items"]
    assert [i["key"] for i in items] == ["layout"]
    assert items[0]["etag"] == get(d, bob, "user/layout").headers["ETag"]
    assert get(d, alice, "user/layout").json()["value"] == {"cols": 2}


def test_list_with_cursor(tenantd, auth_token):
    d = tenantd()
    admin, bob = auth_token(d, "root", ["admin"]), auth_token(d, "bob")
    keys = sorted("k%02d" % i for i in range(7))
    for k in keys:
        assert put(d, admin, "tenant/" + k, k).status_code == 201
    assert put(d, admin, "site:s1/zz", 1).status_code == 201
    seen, cursor, pages = [], None, 0
    while True:
        r = get(d, bob, "tenant?limit=3" + ("&cursor=" + cursor if cursor else ""))
        assert r.status_code == 200, r.text
        doc = r.json()
        assert len(doc["items"]) <= 3
        seen += [i["key"] for i in doc["items"]]
        pages += 1
        cursor = doc["next_cursor"]
        if cursor is None:
            break
    assert seen == keys and pages == 3
    assert [i["key"] for i in get(d, bob, "site:s1").json()["items"]] == ["zz"]
    assert get(d, bob, "site:s2").json()["items"] == []
    for q in ("limit=0", "limit=1001", "limit=x", "cursor=a%2Fb"):
        assert_problem(get(d, bob, "tenant?" + q, direct=True), 400)


def test_value_limits(tenantd, auth_token):
    d = tenantd()
    admin = auth_token(d, "root", ["admin"])
    big = "x" * (64 * 1024 - 2)            # 64 KiB exactly as JSON
    assert put(d, admin, "tenant/big", big).status_code == 201
    assert get(d, admin, "tenant/big").json()["value"] == big
    r = put(d, admin, "tenant/big2", big + "y", direct=True)
    assert_problem(r, 413, "/value")
    assert_problem(get(d, admin, "tenant/big2"), 404)
    deep = 1
    for _ in range(40):
        deep = [deep]
    assert_problem(put(d, admin, "tenant/deep", deep, direct=True), 400)
    assert_problem(get(d, admin, "tenant/deep"), 404)


def test_concurrent_conditional_writes(tenantd, auth_token):
    d = tenantd()
    admin = auth_token(d, "root", ["admin"])
    etag = put(d, admin, "tenant/counter", 0).headers["ETag"]
    results = []

    def writer(i):
        r = put(d, admin, "tenant/counter", i, **{"If-Match": etag})
        results.append(r.status_code)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(1, 9)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [200] + [412] * 7, results
    results.clear()
    threads = [threading.Thread(target=lambda: results.append(
        put(d, admin, "tenant/once", 1, **{"If-None-Match": "*"}).status_code))
        for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [201] + [412] * 7, results
