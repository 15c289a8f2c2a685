"""fake_entra.py: a fake Microsoft Entra ID authority for tenantd's tests.

Serves, over TLS on 127.0.0.1 (an ephemeral port) with a test CA made at
start, what tenantd reads from Entra:

    /{tid}/.well-known/openid-configuration        v1 metadata
    /{tid}/v2.0/.well-known/openid-configuration   v2 metadata
    /{tid}/discovery/keys                          JWKS named by v1
    /{tid}/discovery/v2.0/keys                     JWKS named by v2

Python API (tests/integration/*.py):

    from fake_entra import FakeEntra
    with FakeEntra(tenant_id, workdir) as fe:
        fe.authority           "https://127.0.0.1:PORT" (auth.authority)
        fe.ca_file             the test CA to trust (auth.ca_file)
        fe.issuer(1|2)         the issuer string of that token version
        fe.kid                 kid of the current signing key
        fe.token(version=2, claims=None, drop=(), headers=None, key=None,
                 kid=None, algorithm="RS256", audience=..., scope=...)
                               a token minted with python3-jwt; claims
                               override the defaults, drop removes claims
        fe.claims(version)     the default claims (a fresh dict)
        fe.new_key()           an RSA private key that is not published
        fe.rotate(keep_old=True)  publish a new current key; returns kid
        fe.down() / fe.up()    stop / resume listening (connections are
                               refused meanwhile; the port is kept)
        fe.counts()            {"metadata_v1": n, "metadata_v2": n,
                                "jwks_v1": n, "jwks_v2": n, "other": n}
        fe.jwks_fetches()      jwks_v1 + jwks_v2
        fe.reset_counts()
        fe.stop()

Extra endpoints for the HTTP client's tests (not Entra's):
    GET  /_test/hello                 200 "hello"
    POST /_test/echo                  200 JSON {method, body, headers}
    GET  /_test/slow?ms=N             answers after N ms
    GET  /_test/big?bytes=N           N bytes of "x"
    GET  /_test/status?code=C&retry_after=S   status C with Retry-After
    GET  /_test/redirect              302 to /_test/hello

Command line (for the C unit tests): `fake_entra.py --dir DIR [--tenant T]`
prints one JSON line {"authority", "ca_file", "other_ca_file", "tenant",
"issuer_v1", "issuer_v2", "kid", "port"} and then answers commands read
from stdin, one per line, with one JSON line each: rotate, down, up,
counts, reset, quit. It exits at end of input.
"""

import datetime
import http.server
import json
import os
import socket
import ssl
import sys
import threading
import time
import urllib.parse
import uuid

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

DEFAULT_TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
V2_CLIENT_ID = "6e74172b-be56-4843-9ff4-e66a39bb12e3"
V1_APP_ID_URI = "api://contoso-api"
SPFX_CLIENT = "08e18876-6177-487e-b8b5-cf950c1e598c"
TEAMS_CLIENT = "5e3ce6c0-2b1f-4285-8d4b-75ee78787346"


def _rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _b64url_uint(n):
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return jwt.utils.base64url_encode(raw).decode()


def _cert(subject, issuer, pubkey, signer, ca, sans=None):
    now = datetime.datetime.utcnow()
    b = (x509.CertificateBuilder()
         .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME,
                                                     subject)]))
         .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME,
                                                    issuer)]))
         .public_key(pubkey)
         .serial_number(x509.random_serial_number())
         .not_valid_before(now - datetime.timedelta(minutes=5))
         .not_valid_after(now + datetime.timedelta(days=2))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None),
                        critical=True))
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName(sans),
                            critical=False)
    return b.sign(signer, hashes.SHA256())


def make_test_ca(workdir, name="tenantd test CA"):
    """Write NAME's CA and a 127.0.0.1/localhost server certificate under
    workdir; returns (ca_file, cert_file, key_file)."""
    os.makedirs(workdir, exist_ok=True)
    ca_key, srv_key = _rsa_key(), _rsa_key()
    ca = _cert(name, name, ca_key.public_key(), ca_key, True)
    import ipaddress
    sans = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.DNSName("localhost")]
    srv = _cert("127.0.0.1", name, srv_key.public_key(), ca_key, False,
                sans)
    slug = name.replace(" ", "-")
    paths = [os.path.join(workdir, slug + s)
             for s in ("-ca.pem", "-cert.pem", "-key.pem")]
    pem = serialization.Encoding.PEM
    with open(paths[0], "wb") as f:
        f.write(ca.public_bytes(pem))
    with open(paths[1], "wb") as f:
        f.write(srv.public_bytes(pem))
    with open(paths[2], "wb") as f:
        f.write(srv_key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
    return tuple(paths)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr, handler, ctx, fake):
        self.ctx = ctx
        self.fake = fake
        self.conns = set()
        self.conns_lock = threading.Lock()
        super().__init__(addr, handler)

    def finish_request(self, request, client_address):
        # The TLS handshake runs in the request's thread, not the loop.
        request.settimeout(10)
        try:
            request = self.ctx.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        with self.conns_lock:
            self.conns.add(request)
        try:
            super().finish_request(request, client_address)
        finally:
            with self.conns_lock:
                self.conns.discard(request)

    def close_connections(self):
        """Drop kept-alive connections too, as an outage would."""
        with self.conns_lock:
            for s in self.conns:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self.conns.clear()

    def handle_error(self, request, client_address):
        pass


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _send(self, code, body, ctype="application/json", extra=None):
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
        if isinstance(body, str):
            body = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        q = dict(urllib.parse.parse_qsl(url.query))
        if url.path.startswith("/_test/"):
            return self._test(url.path, q, None)
        fake = self.server.fake
        kind, doc = fake._document(url.path)
        fake._count(kind)
        if doc is None:
            return self._send(404, {"error": "not_found"})
        self._send(200, doc)

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        url = urllib.parse.urlsplit(self.path)
        if url.path.startswith("/_test/"):
            return self._test(url.path, {}, body)
        self._send(404, {"error": "not_found"})

    def _test(self, path, q, body):
        if path == "/_test/hello":
            return self._send(200, "hello", "text/plain")
        if path == "/_test/echo":
            return self._send(200, {
                "method": self.command,
                "body": (body or b"").decode("latin-1"),
                "headers": {k.lower(): v for k, v in self.headers.items()}})
        if path == "/_test/slow":
            time.sleep(int(q.get("ms", "1000")) / 1000.0)
            return self._send(200, "slow", "text/plain")
        if path == "/_test/big":
            return self._send(200, "x" * int(q.get("bytes", "0")),
                              "text/plain")
        if path == "/_test/status":
            extra = {}
            if "retry_after" in q:
                extra["Retry-After"] = q["retry_after"]
            return self._send(int(q.get("code", "200")), "status",
                              "text/plain", extra)
        if path == "/_test/redirect":
            return self._send(302, "", "text/plain",
                              {"Location": "/_test/hello"})
        self._send(404, {"error": "not_found"})


class FakeEntra:
    def __init__(self, tenant_id=DEFAULT_TENANT, workdir=None):
        import tempfile
        self.tenant_id = tenant_id
        self.workdir = workdir or tempfile.mkdtemp(prefix="fake-entra-")
        self.ca_file, cert, key = make_test_ca(self.workdir)
        self.other_ca_file = make_test_ca(
            os.path.join(self.workdir, "other"), "unrelated test CA")[0]
        self._ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        self._ctx.load_cert_chain(cert, key)
        self._lock = threading.Lock()
        self._keys = []          # [(kid, private key)], current last
        self.reset_counts()
        self.rotate()
        self.port = 0
        self._server = None
        self.up()

    # --- life cycle -----------------------------------------------------
    def up(self):
        if self._server is not None:
            return
        self._server = _Server(("127.0.0.1", self.port), _Handler,
                               self._ctx, self)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        daemon=True)
        self._thread.start()

    def down(self):
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        self._server.close_connections()
        self._thread.join()
        self._server = None

    stop = down

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    @property
    def authority(self):
        return "https://127.0.0.1:%d" % self.port

    # --- keys -----------------------------------------------------------
    @staticmethod
    def new_key():
        return _rsa_key()

    def rotate(self, keep_old=True):
        kid = uuid.uuid4().hex[:20]
        with self._lock:
            if not keep_old:
                self._keys = []
            self._keys.append((kid, _rsa_key()))
        return kid

    @property
    def kid(self):
        with self._lock:
            return self._keys[-1][0]

    @property
    def key(self):
        with self._lock:
            return self._keys[-1][1]

    def jwks(self, version=2):
        keys = []
        with self._lock:
            for kid, k in self._keys:
                pub = k.public_key().public_numbers()
                jwk = {"kty": "RSA", "use": "sig", "kid": kid,
                       "n": _b64url_uint(pub.n), "e": _b64url_uint(pub.e)}
                if version == 1:
                    jwk["x5t"] = kid
                else:
                    jwk["issuer"] = self.issuer(2)
                keys.append(jwk)
        return {"keys": keys}

    # --- documents ------------------------------------------------------
    def issuer(self, version):
        if version == 1:
            return "https://sts.windows.net/%s/" % self.tenant_id
        return "%s/%s/v2.0" % (self.authority, self.tenant_id)

    def metadata(self, version):
        base = "%s/%s" % (self.authority, self.tenant_id)
        keys = "/discovery/v2.0/keys" if version == 2 else "/discovery/keys"
        return {"issuer": self.issuer(version),
                "jwks_uri": base + keys,
                "authorization_endpoint": base + "/oauth2/authorize",
                "id_token_signing_alg_values_supported": ["RS256"]}

    def _document(self, path):
        t = "/" + self.tenant_id
        table = {
            t + "/.well-known/openid-configuration":
                ("metadata_v1", lambda: self.metadata(1)),
            t + "/v2.0/.well-known/openid-configuration":
                ("metadata_v2", lambda: self.metadata(2)),
            t + "/discovery/keys": ("jwks_v1", lambda: self.jwks(1)),
            t + "/discovery/v2.0/keys": ("jwks_v2", lambda: self.jwks(2)),
        }
        if path not in table:
            return "other", None
        kind, fn = table[path]
        return kind, fn()

    def _count(self, kind):
        with self._lock:
            self._counts[kind] = self._counts.get(kind, 0) + 1

    def counts(self):
        with self._lock:
            return dict(self._counts)

    def reset_counts(self):
        with getattr(self, "_lock", threading.Lock()):
            self._counts = {k: 0 for k in ("metadata_v1", "metadata_v2",
                                           "jwks_v1", "jwks_v2", "other")}

    def jwks_fetches(self):
        c = self.counts()
        return c["jwks_v1"] + c["jwks_v2"]

    # --- tokens ---------------------------------------------------------
    def claims(self, version=2, lifetime=3600):
        now = int(time.time())
        c = {"iat": now, "nbf": now, "exp": now + lifetime,
             "oid": str(uuid.uuid4()), "tid": self.tenant_id,
             "name": "Test User", "sub": uuid.uuid4().hex}
        if version == 1:
            c.update({"ver": "1.0", "iss": self.issuer(1),
                      "aud": V1_APP_ID_URI, "appid": SPFX_CLIENT,
                      "scp": "user_impersonation",
                      "upn": "user@contoso.example",
                      "unique_name": "user@contoso.example"})
        else:
            c.update({"ver": "2.0", "iss": self.issuer(2),
                      "aud": V2_CLIENT_ID, "azp": TEAMS_CLIENT,
                      "scp": "access_as_user",
                      "preferred_username": "user@contoso.example"})
        return c

    def token(self, version=2, claims=None, drop=(), headers=None, key=None,
              kid=None, algorithm="RS256"):
        c = self.claims(version)
        c.update(claims or {})
        for name in drop:
            c.pop(name, None)
        h = {"typ": "JWT", "kid": kid or self.kid}
        if version == 1:
            h["x5t"] = h["kid"]
        h.update(headers or {})
        return jwt.encode(c, key if key is not None else self.key,
                          algorithm=algorithm, headers=h)


def _main(argv):
    import argparse
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--tenant", default=DEFAULT_TENANT)
    args = ap.parse_args(argv)
    fe = FakeEntra(args.tenant, args.dir)

    def hello():
        return {"authority": fe.authority, "ca_file": fe.ca_file,
                "other_ca_file": fe.other_ca_file, "tenant": fe.tenant_id,
                "issuer_v1": fe.issuer(1), "issuer_v2": fe.issuer(2),
                "kid": fe.kid, "port": fe.port}

    commands = {
        "rotate": lambda: {"kid": fe.rotate()},
        "down": lambda: fe.down() or {"ok": True},
        "up": lambda: fe.up() or {"ok": True},
        "counts": fe.counts,
        "reset": lambda: fe.reset_counts() or {"ok": True},
    }
    print(json.dumps(hello()), flush=True)
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "quit":
            break
        fn = commands.get(cmd)
        print(json.dumps(fn() if fn else {"error": "unknown " + cmd}),
              flush=True)
    fe.stop()


if __name__ == "__main__":
    _main(sys.argv[1:])
