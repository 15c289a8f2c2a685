"""The HTTPS server: TLS policy, limits, headers, problems, CORS, metrics."""
import os
import subprocess
import re
import socket
import ssl
import threading
import time

import pytest
import requests

ORIGIN = "https://contoso.sharepoint.com"


def tls_context(certs, **kw):
    ctx = ssl.create_default_context(cafile=str(certs.ca))
    for k, v in kw.items():
        setattr(ctx, k, v)
    return ctx


def tls_connect(d, ctx=None, timeout=10):
    host, port = d.hostport()
    raw = socket.create_connection((host, port), timeout=timeout)
    return (ctx or tls_context(d.certs)).wrap_socket(raw, server_hostname="localhost")


def read_response(sock, timeout=10):
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    m = re.search(rb"content-length: *(\d+)", head, re.I)
    want = int(m.group(1)) if m else 0
    while len(body) < want:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return head.decode(), body


def test_livez_headers(tenantd):
    d = tenantd()
    r = d.get("/livez")
    assert r.status_code == 200
    assert r.text == "ok"
    assert r.headers["Cache-Control"] == "no-store"
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["Strict-Transport-Security"].startswith("max-age=")
    assert re.fullmatch(r"[0-9a-f]{16}-[0-9a-f]+", r.headers["X-Request-Id"])


def test_request_id_accepted_or_replaced(tenantd):
    d = tenantd()
    r = d.get("/livez", headers={"X-Request-Id": "web-part.42:abc"})
    assert r.headers["X-Request-Id"] == "web-part.42:abc"
    r = d.get("/livez", headers={"X-Request-Id": "has spaces and \"quotes\""})
    assert r.headers["X-Request-Id"] != "has spaces and \"quotes\""
    assert re.fullmatch(r"[0-9a-f]{16}-[0-9a-f]+", r.headers["X-Request-Id"])


def test_request_id_in_logs(tenantd):
    d = tenantd({"log": {"level": "debug"}})
    d.get("/nope", headers={"X-Request-Id": "trace-me-123"})
    d.wait_log(lambda l: l.get("request_id") == "trace-me-123", 10)


def test_tls12_aead_accepted(tenantd):
    d = tenantd()
    ctx = tls_context(d.certs, maximum_version=ssl.TLSVersion.TLSv1_2)
    ctx.set_ciphers("ECDHE-ECDSA-AES128-GCM-SHA256")
    with tls_connect(d, ctx) as s:
        assert s.version() == "TLSv1.2"
        s.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
        head, body = read_response(s)
        assert head.startswith("HTTP/1.1 200")


PERMISSIVE_OPENSSL_CNF = """openssl_conf = default_conf
[default_conf]
ssl_conf = ssl_sect
[ssl_sect]
system_default = system_default_sect
[system_default_sect]
MinProtocol = TLSv1
CipherString = DEFAULT:@SECLEVEL=0
"""


def s_client(port, *args, env=None):
    r = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % port] + list(args),
                       input="", capture_output=True, text=True, timeout=20, env=env)
    return r.stdout + r.stderr


@pytest.fixture
def permissive_openssl(tmp_path):
    """An OpenSSL config that allows TLS 1.0/1.1 and weak ciphers, so that
    only tenantd's own TLS policy can refuse them."""
    cnf = tmp_path / "permissive.cnf"
    cnf.write_text(PERMISSIVE_OPENSSL_CNF)
    return dict(os.environ, OPENSSL_CONF=str(cnf))


def handshake_ok(out, protocol):
    return bool(re.search(r"Cipher is (?!\(NONE\))", out)) and ("Protocol  : %s" % protocol) in out


def reference_server(env, certs, *args):
    """openssl s_server with the same certificate, as a control."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    p = subprocess.Popen(["openssl", "s_server", "-accept", "127.0.0.1:%d" % port,
                          "-cert", str(certs.cert), "-key", str(certs.key), "-www"] + list(args),
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return p, port
        except OSError:
            time.sleep(0.05)
    p.kill()
    raise AssertionError("openssl s_server did not start")


def test_tls11_refused(tenantd, permissive_openssl):
    env = permissive_openssl
    d = tenantd(start=False)
    ref, ref_port = reference_server(env, d.certs, "-tls1_1")
    try:
        out = s_client(ref_port, "-tls1_1", env=env)
        assert handshake_ok(out, "TLSv1.1"), "control: the client cannot speak TLS 1.1:\n" + out
    finally:
        ref.kill()
    d.start(env=env)
    out = s_client(d.hostport()[1], "-tls1_1", env=env)
    assert not handshake_ok(out, "TLSv1.1"), out
    assert "alert protocol version" in out, out
    out = s_client(d.hostport()[1], "-tls1_2", env=env)
    assert handshake_ok(out, "TLSv1.2"), out


def test_tls12_cbc_cipher_refused(tenantd, permissive_openssl):
    env = permissive_openssl
    d = tenantd(start=False)
    cbc = "ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA384"
    ref, ref_port = reference_server(env, d.certs)
    try:
        out = s_client(ref_port, "-tls1_2", "-cipher", cbc, env=env)
        assert handshake_ok(out, "TLSv1.2"), "control failed:\n" + out
    finally:
        ref.kill()
    d.start(env=env)
    out = s_client(d.hostport()[1], "-tls1_2", "-cipher", cbc, env=env)
    assert not handshake_ok(out, "TLSv1.2"), out
    assert "handshake failure" in out, out


def test_problem_document_404(tenantd):
    d = tenantd()
    r = d.get("/no/such/thing")
    assert r.status_code == 404
    assert r.headers["Content-Type"] == "application/problem+json"
    p = r.json()
    assert p["status"] == 404
    assert p["type"].startswith("urn:tenantd:problem:")
    assert p["title"] == "Not Found"
    assert p["instance"] == "/no/such/thing"
    assert p["request_id"] == r.headers["X-Request-Id"]


def test_method_not_allowed(tenantd):
    d = tenantd()
    r = requests.delete(d.url("/livez"), verify=str(d.certs.ca), timeout=10)
    assert r.status_code == 405
    assert "GET" in r.headers["Allow"]
    assert r.json()["status"] == 405


def test_head(tenantd):
    d = tenantd()
    r = requests.head(d.url("/livez"), verify=str(d.certs.ca), timeout=10)
    assert r.status_code == 200
    assert r.content == b""


def test_oversized_body_413(tenantd):
    d = tenantd({"http": {"max_body_size": "1KiB"}})
    r = requests.post(d.url("/livez"), data=b"x" * 4096, verify=str(d.certs.ca), timeout=10)
    assert r.status_code == 413
    # a body under the limit reaches routing (and gets 405 there)
    r = requests.post(d.url("/livez"), data=b"x" * 512, verify=str(d.certs.ca), timeout=10)
    assert r.status_code == 405


def test_oversized_headers_refused(tenantd):
    d = tenantd({"http": {"max_header_size": "2KiB"}})
    r = requests.get(d.url("/livez"), headers={"X-Big": "a" * 8000},
                     verify=str(d.certs.ca), timeout=10)
    assert r.status_code in (400, 413, 431)
    assert d.get("/livez").status_code == 200


def test_cors_preflight_allowed(tenantd):
    d = tenantd()
    r = requests.options(d.url("/livez"), verify=str(d.certs.ca), timeout=10, headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "authorization, content-type"})
    assert r.status_code == 204
    assert r.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "Origin" in r.headers["Vary"]
    allowed = [h.strip() for h in r.headers["Access-Control-Allow-Headers"].split(",")]
    for h in ("authorization", "content-type", "if-match", "if-none-match"):
        assert h in allowed
    assert int(r.headers["Access-Control-Max-Age"]) > 0


def test_cors_preflight_disallowed(tenantd):
    d = tenantd()
    for origin in ("https://evil.example", "https://contoso.sharepoint.com.evil.example",
                   "http://contoso.sharepoint.com", "null"):
        r = requests.options(d.url("/livez"), verify=str(d.certs.ca), timeout=10, headers={
            "Origin": origin, "Access-Control-Request-Method": "GET"})
        assert r.status_code == 403, origin
        assert "Access-Control-Allow-Origin" not in r.headers
        assert "Access-Control-Allow-Headers" not in r.headers


def test_cors_simple_request(tenantd):
    d = tenantd()
    r = d.get("/livez", headers={"Origin": ORIGIN})
    assert r.headers["Access-Control-Allow-Origin"] == ORIGIN
    r = d.get("/livez", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in r.headers
    assert "Origin" in r.headers["Vary"]


METRIC_LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*"'
                         r'(,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*")*)?\})? (\S+)$')


def parse_metrics(text):
    samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            assert not line or re.match(r"^# (HELP|TYPE) \w+ ", line), line
            continue
        m = METRIC_LINE.match(line)
        assert m, "not Prometheus text format: %r" % line
        float(m.group(5)) if m.group(5) != "+Inf" else None
        samples[(m.group(1), m.group(3) or "")] = float(m.group(5))
    return samples


def test_metrics(tenantd):
    d = tenantd()
    for _ in range(5):
        assert d.get("/livez").status_code == 200
    d.get("/nope")
    r = d.get("/metrics")
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    s = parse_metrics(r.text)
    assert s[("tenantd_build_info", 'version="0.1.0"')] == 1
    assert s[("tenantd_http_requests_total", 'route="/livez",code="200"')] == 5
    assert s[("tenantd_http_requests_total", 'route="unmatched",code="404"')] == 1
    assert s[("tenantd_http_request_duration_seconds_count", 'route="/livez"')] == 5
    buckets = sorted((float(k[1].split('le="')[1].rstrip('"')) if "+Inf" not in k[1] else float("inf"), v)
                     for k, v in s.items()
                     if k[0] == "tenantd_http_request_duration_seconds_bucket" and 'route="/livez"' in k[1])
    counts = [v for _, v in buckets]
    assert counts == sorted(counts) and counts[-1] == 5
    assert s[("process_resident_memory_bytes", "")] > 1e6
    assert s[("tenantd_http_open_connections", "")] >= 1


def test_readyz(tenantd):
    d = tenantd()
    r = d.get("/readyz")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ready"
    names = {c["name"]: c for c in body["checks"]}
    assert names["config"]["ok"] and names["listeners"]["ok"]


def test_several_listeners_ipv6_and_plain(tenantd):
    d = tenantd({"listen": [
        {"address": "127.0.0.1:0", "tls": True},
        {"address": "[::1]:0", "tls": True},
        {"address": "127.0.0.1:0", "tls": False}]})
    schemes = [s for s, _ in d.listeners]
    assert schemes.count("https") == 2 and schemes.count("http") == 1
    for scheme, addr in d.listeners:
        r = requests.get("%s://%s/livez" % (scheme, addr), verify=str(d.certs.ca), timeout=10)
        assert r.status_code == 200
        assert ("Strict-Transport-Security" in r.headers) == (scheme == "https")


def test_plaintext_listener_on_public_address_refused(tenantd):
    d = tenantd({"listen": [{"address": "0.0.0.0:0", "tls": False}]}, start=False)
    from conftest import run_tenantd
    r = run_tenantd("-n", "-c", str(d.conf_path))
    assert r.returncode == 1
    assert re.search(r"%s:\d+:\d+: .*loopback" % re.escape(str(d.conf_path)), r.stderr), r.stderr


def test_slowloris_dropped_others_served(tenantd):
    d = tenantd({"http": {"request_timeout": "2s", "idle_timeout": "60s"}})
    slow = tls_connect(d)
    slow.sendall(b"GET /livez HTTP/1.1\r\n")
    served = 0
    dropped = False
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            slow.sendall(b"X-Slow: 1\r\n")
            slow.settimeout(0.01)
            if slow.recv(1) == b"":
                dropped = True
                break
        except (socket.timeout, ssl.SSLWantReadError):
            pass
        except (OSError, ssl.SSLError):
            dropped = True
            break
        assert d.get("/livez").status_code == 200
        served += 1
        time.sleep(0.4)
    assert dropped, "a client trickling headers was never dropped"
    assert served >= 1
    d.wait_log("request not received within", 5)
    assert d.get("/livez").status_code == 200


def test_connection_limit_503(tenantd):
    d = tenantd({"http": {"max_connections": 3, "workers": 1}})
    conns = []
    for _ in range(3):
        c = tls_connect(d)
        c.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
        head, _ = read_response(c)
        assert head.startswith("HTTP/1.1 200")
        conns.append(c)
    extra = tls_connect(d)
    extra.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
    head, body = read_response(extra)
    assert head.startswith("HTTP/1.1 503"), head
    assert b"connection limit" in body
    extra.close()
    for c in conns:         # the others keep being served
        c.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
        head, body = read_response(c)
        assert head.startswith("HTTP/1.1 200") and body == b"ok"
        c.close()
