"""Test doubles for log shipping that follow Microsoft's documented contract:
the Azure Monitor Logs Ingestion API, the legacy HTTP Data Collector API,
the Entra ID token endpoint (client secret and client assertion) and the
Azure Instance Metadata Service (managed identity).

Every request is checked (path, api-version, headers, gzip, JSON array,
size, token audience and expiry, SharedKey signature); anything off the
contract is recorded in `violations` and answered 400. Faults can be
injected: random 500s, 429 with Retry-After, 413 above a size, connection
resets, slow answers, timeouts, outages of N seconds, tokens that expire
early, IMDS 410/429/500.

Runs inside a test (Emulator(...).start()) or on its own for the
benchmark: python3 azure_emulator.py --cert C --key K (prints its ports)."""
import base64
import collections
import datetime
import email.utils
import gzip
import hashlib
import hmac
import http.server
import json
import random
import re
import secrets
import socket
import ssl
import struct
import sys
import threading
import time
import urllib.parse

MAX_BODY = 1024 * 1024          # the documented 1 MB per call
AUDIENCE = "https://monitor.azure.com"
INGEST_RE = re.compile(r"^/dataCollectionRules/([^/]+)/streams/([^/?]+)$")
TOKEN_RE = re.compile(r"^/([0-9a-f-]{36})/oauth2/v2\.0/token$")
ISO_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


class Faults:
    """What the ingestion endpoint does wrong, set by tests at any time."""

    def __init__(self):
        self.fail_rate = 0.0        # random 500s
        self.throttle_rate = 0.0    # random 429s
        self.retry_after = 1        # seconds, on 429
        self.reset_rate = 0.0       # close the connection, no answer
        self.max_body = MAX_BODY    # 413 above this (compressed or not)
        self.delay = 0.0            # slow answers, seconds
        self.hang_rate = 0.0        # no answer for hang seconds
        self.hang = 0.0
        self.outage_until = 0.0     # monotonic; resets until then
        self.status_queue = []      # next answers, e.g. [403, 500]
        self.token_life = 3600      # expires_in announced
        self.token_real_life = None  # tokens really die after this
        self.imds_queue = []        # next IMDS statuses, e.g. [410, 429]
        self.reject_tokens_once = False  # next ingestion call: 401

    def outage(self, seconds):
        self.outage_until = time.monotonic() + seconds


class State:
    def __init__(self, dcr, streams, tenant, client_id, secret, cert_pem,
                 workspace_id, shared_key, audience):
        self.lock = threading.Lock()
        self.dcr = dcr
        self.streams = set(streams)
        self.tenant = tenant
        self.client_id = client_id
        self.secret = secret
        self.cert_pem = cert_pem
        self.workspace_id = workspace_id
        self.shared_key = shared_key
        self.audience = audience
        self.faults = Faults()
        self.tokens = {}            # token -> (audience, real expiry)
        self.ids = collections.Counter()
        self.records = collections.defaultdict(list)  # stream -> records
        self.keep_records = True
        self.violations = []
        self.requests = collections.Counter()   # outcome -> count
        self.token_requests = 0
        self.imds_requests = 0
        self.wire_bytes = 0         # request bodies as sent
        self.json_bytes = 0         # after gunzip
        self.batches = 0
        self.sizes = []             # (json bytes, records) per 2xx batch

    def violation(self, what):
        with self.lock:
            self.violations.append(what)

    def issue_token(self, audience):
        tok = secrets.token_urlsafe(32)
        f = self.faults
        life = f.token_real_life if f.token_real_life is not None else f.token_life
        with self.lock:
            self.tokens[tok] = (audience, time.monotonic() + life)
        return tok, f.token_life


def _error(handler, status, code, message, headers=()):
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("x-ms-error-code", code)
    for k, v in headers:
        handler.send_header(k, v)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def _reset(handler):
    """Abort the connection with a TCP RST, no answer."""
    try:
        handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                      struct.pack("ii", 1, 0))
        handler.connection.close()
    except OSError:
        pass
    handler.close_connection = True


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "AzureEmulator/1"

    def log_message(self, fmt, *args):
        pass

    @property
    def st(self):
        return self.server.state

    def read_body(self):
        n = int(self.headers.get("Content-Length", "0"))
        if n > 32 * MAX_BODY:
            raise ValueError("body too large to read")
        return self.rfile.read(n)

    def do_POST(self):
        path, _, query = self.path.partition("?")
        q = urllib.parse.parse_qs(query)
        body = self.read_body()
        if INGEST_RE.match(path):
            return self.ingest(path, q, body)
        if path == "/api/logs":
            return self.legacy(q, body)
        m = TOKEN_RE.match(path)
        if m:
            return self.token(m.group(1), body)
        self.st.violation("POST to unknown path %s" % path)
        _error(self, 404, "NotFound", "no such path")

    def do_GET(self):
        if self.path.startswith("/metadata/identity/oauth2/token"):
            return self.imds()
        if self.path == "/_emulator/stats":
            return self.stats()
        _error(self, 404, "NotFound", "no such path")

    # --- ingestion -------------------------------------------------------------

    def faults_before(self):
        """True when a fault already answered (or dropped) the request."""
        f = self.st.faults
        if time.monotonic() < f.outage_until:
            self.st.requests["outage"] += 1
            _reset(self)
            return True
        if f.delay:
            time.sleep(f.delay)
        r = random.random()
        if r < f.reset_rate:
            self.st.requests["reset"] += 1
            _reset(self)
            return True
        if random.random() < f.hang_rate:
            self.st.requests["hang"] += 1
            time.sleep(f.hang)
            _reset(self)
            return True
        with self.st.lock:
            forced = f.status_queue.pop(0) if f.status_queue else None
        if forced is not None:
            self.st.requests[str(forced)] += 1
            hdrs = [("Retry-After", str(f.retry_after))] if forced == 429 else []
            _error(self, forced, "Injected", "injected %d" % forced, hdrs)
            return True
        if random.random() < f.fail_rate:
            self.st.requests["500"] += 1
            _error(self, 500, "InternalServerError", "injected failure")
            return True
        if random.random() < f.throttle_rate:
            self.st.requests["429"] += 1
            _error(self, 429, "TooManyRequests", "slow down",
                   [("Retry-After", str(f.retry_after))])
            return True
        return False

    def check_token(self):
        st = self.st
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Bearer "):
            st.violation("ingestion call without a bearer token: %r" % auth[:40])
            _error(self, 401, "InvalidAuthenticationToken", "no bearer token")
            return False
        with st.lock:
            entry = st.tokens.get(auth[7:])
            if st.faults.reject_tokens_once:
                st.faults.reject_tokens_once = False
                entry = None
        if entry is None or entry[1] < time.monotonic():
            st.requests["401"] += 1
            _error(self, 401, "InvalidAuthenticationToken", "token expired or unknown")
            return False
        if entry[0] != st.audience:
            st.violation("token for audience %r, not %r" % (entry[0], st.audience))
            _error(self, 401, "InvalidAuthenticationToken", "wrong audience")
            return False
        return True

    def check_records(self, raw, stream, legacy=False):
        """Parse and check a JSON array of records; returns it or None."""
        st = self.st
        try:
            text = raw.decode("utf-8")
            recs = json.loads(text)
        except (UnicodeDecodeError, ValueError) as e:
            st.violation("body is not UTF-8 JSON: %s" % e)
            return None
        if not isinstance(recs, list) or not recs:
            st.violation("body is not a non-empty JSON array")
            return None
        for r in recs:
            if not isinstance(r, dict):
                st.violation("array item is not an object")
                return None
            tg, rid = r.get("TimeGenerated"), r.get("RecordId")
            if not isinstance(tg, str) or not ISO_RE.match(tg):
                st.violation("TimeGenerated %r is not ISO 8601 UTC" % (tg,))
                return None
            if not isinstance(rid, str) or not rid:
                st.violation("record without RecordId")
                return None
        return recs

    def accept(self, stream, recs, wire, json_len):
        st = self.st
        with st.lock:
            for r in recs:
                st.ids[r["RecordId"]] += 1
            if st.keep_records:
                st.records[stream].extend(recs)
            st.wire_bytes += wire
            st.json_bytes += json_len
            st.batches += 1
            st.sizes.append((json_len, len(recs)))
            st.requests["2xx"] += 1

    def ingest(self, path, q, body):
        st = self.st
        dcr, stream = INGEST_RE.match(path).groups()
        if q.get("api-version") != ["2023-01-01"]:
            st.violation("api-version %r" % q.get("api-version"))
            return _error(self, 400, "InvalidApiVersion", "api-version")
        if dcr != st.dcr or stream not in st.streams:
            st.violation("unknown DCR %s or stream %s" % (dcr, stream))
            return _error(self, 404, "NotFound", "no such DCR or stream")
        if self.headers.get("Content-Type", "").split(";")[0] != "application/json":
            st.violation("Content-Type %r" % self.headers.get("Content-Type"))
            return _error(self, 400, "InvalidContentType", "Content-Type")
        if self.faults_before():
            return
        if not self.check_token():
            return
        raw = body
        if len(body) > st.faults.max_body:
            st.requests["413"] += 1
            return _error(self, 413, "ContentLengthLimitExceeded", "over the limit")
        enc = self.headers.get("Content-Encoding")
        if enc == "gzip":
            try:
                raw = gzip.decompress(body)
            except OSError as e:
                st.violation("bad gzip: %s" % e)
                return _error(self, 400, "InvalidContentEncoding", "gzip")
        elif enc is not None:
            st.violation("Content-Encoding %r" % enc)
            return _error(self, 400, "InvalidContentEncoding", enc)
        if len(raw) > st.faults.max_body:
            st.requests["413"] += 1
            return _error(self, 413, "ContentLengthLimitExceeded", "over the limit")
        recs = self.check_records(raw, stream)
        if recs is None:
            return _error(self, 400, "InvalidContent", "records")
        self.accept(stream, recs, len(body), len(raw))
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    # --- legacy HTTP Data Collector API ---------------------------------------

    def legacy(self, q, body):
        st = self.st
        if q.get("api-version") != ["2016-04-01"]:
            st.violation("legacy api-version %r" % q.get("api-version"))
            return _error(self, 400, "InvalidApiVersion", "api-version")
        date = self.headers.get("x-ms-date", "")
        log_type = self.headers.get("Log-Type", "")
        if not re.fullmatch(r"[A-Za-z0-9_]{1,100}", log_type):
            st.violation("Log-Type %r" % log_type)
            return _error(self, 400, "InvalidLogType", "Log-Type")
        try:
            when = email.utils.parsedate_to_datetime(date)
        except (TypeError, ValueError):
            st.violation("x-ms-date %r is not RFC 1123" % date)
            return _error(self, 403, "InvalidDate", "x-ms-date")
        now = datetime.datetime.now(datetime.timezone.utc)
        if abs((now - when).total_seconds()) > 900:
            st.violation("x-ms-date skew over 15 min")
            return _error(self, 403, "InvalidDate", "clock skew")
        want = "SharedKey %s:%s" % (st.workspace_id, legacy_signature(
            st.shared_key, len(body), date))
        if not hmac.compare_digest(self.headers.get("Authorization", ""), want):
            st.violation("SharedKey signature mismatch")
            return _error(self, 403, "InvalidAuthorization", "signature")
        if self.headers.get("Content-Type") != "application/json":
            st.violation("legacy Content-Type %r" % self.headers.get("Content-Type"))
            return _error(self, 400, "InvalidContentType", "Content-Type")
        if self.faults_before():
            return
        recs = self.check_records(body, log_type, legacy=True)
        if recs is None:
            return _error(self, 400, "InvalidContent", "records")
        self.accept(log_type, recs, len(body), len(body))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    # --- Entra ID token endpoint ------------------------------------------------

    def token(self, tenant, body):
        st = self.st
        st.token_requests += 1
        form = {k: v[0] for k, v in urllib.parse.parse_qs(body.decode()).items()}
        token_url = "https://%s%s" % (self.headers.get("Host", ""), self.path)
        if tenant != st.tenant or form.get("grant_type") != "client_credentials":
            st.violation("token request: tenant %s grant %r" % (tenant, form.get("grant_type")))
            return _error(self, 400, "invalid_request", "grant_type")
        if form.get("client_id") != st.client_id:
            st.violation("token request for client %r" % form.get("client_id"))
            return _error(self, 400, "unauthorized_client", "client_id")
        scope = form.get("scope", "")
        if not scope.endswith("/.default"):
            st.violation("scope %r" % scope)
            return _error(self, 400, "invalid_scope", "scope")
        if "client_secret" in form:
            ok = st.secret is not None and hmac.compare_digest(form["client_secret"], st.secret)
        elif form.get("client_assertion_type") == ASSERTION_TYPE:
            ok = self.check_assertion(form.get("client_assertion", ""), token_url)
        else:
            st.violation("token request without a credential")
            ok = False
        if not ok:
            return _error(self, 401, "invalid_client", "bad credential")
        tok, life = st.issue_token(scope[:-len("/.default")])
        self.json(200, {"token_type": "Bearer", "expires_in": life,
                        "ext_expires_in": life, "access_token": tok})

    def check_assertion(self, assertion, token_url):
        import jwt
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        st = self.st
        cert = x509.load_pem_x509_certificate(st.cert_pem)
        der = cert.public_bytes(serialization.Encoding.DER)
        want_x5t = base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()
        try:
            header = jwt.get_unverified_header(assertion)
            claims = jwt.decode(assertion, cert.public_key(), algorithms=["PS256", "RS256"],
                                audience=token_url, options={"require": ["exp", "nbf", "iss", "sub", "jti"]})
        except jwt.PyJWTError as e:
            st.violation("client assertion rejected: %s" % e)
            return False
        if header.get("x5t#S256") != want_x5t or header.get("typ") != "JWT":
            st.violation("assertion header %r" % header)
            return False
        if claims["iss"] != st.client_id or claims["sub"] != st.client_id:
            st.violation("assertion iss/sub %r" % claims)
            return False
        if claims["exp"] - time.time() > 3600:
            st.violation("assertion lives too long")
            return False
        return True

    # --- IMDS -------------------------------------------------------------------

    def imds(self):
        st = self.st
        st.imds_requests += 1
        q = urllib.parse.parse_qs(self.path.partition("?")[2])
        if self.headers.get("Metadata") != "true":
            st.violation("IMDS call without Metadata: true")
            return self.json(400, {"error": "invalid_request"})
        if q.get("api-version") != ["2018-02-01"] or "resource" not in q:
            st.violation("IMDS query %r" % q)
            return self.json(400, {"error": "invalid_request"})
        with st.lock:
            forced = st.faults.imds_queue.pop(0) if st.faults.imds_queue else None
        if forced is not None:
            return self.json(forced, {"error": "injected", "error_description": str(forced)})
        if st.client_id and q.get("client_id") not in (None, [st.client_id]):
            return self.json(400, {"error": "invalid_request", "error_description": "identity not found"})
        tok, life = st.issue_token(q["resource"][0])
        now = int(time.time())
        self.json(200, {"access_token": tok, "expires_in": str(life),
                        "expires_on": str(now + life), "not_before": str(now),
                        "resource": q["resource"][0], "token_type": "Bearer"})

    def stats(self):
        st = self.st
        with st.lock:
            dup = sum(c - 1 for c in st.ids.values() if c > 1)
            doc = {"unique": len(st.ids), "duplicates": dup, "batches": st.batches,
                   "wire_bytes": st.wire_bytes, "json_bytes": st.json_bytes,
                   "violations": st.violations[:20], "requests": dict(st.requests)}
        self.json(200, doc)

    def json(self, status, doc):
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def legacy_signature(shared_key_b64, content_length, date):
    """The documented SharedKey signature, computed independently."""
    text = "POST\n%d\napplication/json\nx-ms-date:%s\n/api/logs" % (content_length, date)
    mac = hmac.new(base64.b64decode(shared_key_b64), text.encode("utf-8"), hashlib.sha256)
    return base64.b64encode(mac.digest()).decode()


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def handle_error(self, request, client_address):
        pass        # resets and clients that went away


class Emulator:
    """HTTPS (ingestion, legacy, token) and HTTP (IMDS) on 127.0.0.1."""

    def __init__(self, cert, key, dcr="dcr-00000000000000000000000000000001",
                 streams=("Custom-TenantdAudit_CL", "Custom-TenantdOps_CL",
                          "Custom-TenantdUsage_CL"),
                 tenant="72f988bf-86f1-41af-91ab-2d7cd011db47",
                 client_id="11111111-2222-3333-4444-555555555555", secret=None,
                 cert_pem=None, workspace_id="0b8f2e3c-1d4a-4e5f-9a6b-7c8d9e0f1a2b",
                 shared_key=None, audience=AUDIENCE):
        self.state = State(dcr, streams, tenant, client_id, secret, cert_pem,
                           workspace_id, shared_key, audience)
        self.https = _Server(("127.0.0.1", 0), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(str(cert), str(key))
        self.https.socket = ctx.wrap_socket(self.https.socket, server_side=True)
        self.https.state = self.state
        self.http = _Server(("127.0.0.1", 0), Handler)   # IMDS speaks http
        self.http.state = self.state
        self.threads = []

    @property
    def faults(self):
        return self.state.faults

    @property
    def url(self):
        return "https://localhost:%d" % self.https.server_address[1]

    @property
    def imds_url(self):
        return "http://127.0.0.1:%d" % self.http.server_address[1]

    def start(self):
        for srv in (self.https, self.http):
            t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.1},
                                 daemon=True)
            t.start()
            self.threads.append(t)
        return self

    def stop(self):
        for srv in (self.https, self.http):
            srv.shutdown()
            srv.server_close()

    def ids(self):
        with self.state.lock:
            return collections.Counter(self.state.ids)

    def records(self, stream):
        with self.state.lock:
            return list(self.state.records[stream])


def main():
    import argparse
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--no-keep", action="store_true", help="count ids only")
    a = p.parse_args()
    emu = Emulator(a.cert, a.key).start()
    emu.state.keep_records = not a.no_keep
    print(json.dumps({"url": emu.url, "imds": emu.imds_url}), flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
