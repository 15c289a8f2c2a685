"""A webhook receiver for the notice tests: HTTPS on loopback with the test
certificate, records every delivery, checks the HMAC signature (format
json) or the Teams Workflows message shape (format teams), and can be told
to fail, to answer 429 or to hang."""
import hashlib
import hmac
import http.server
import json
import ssl
import threading
import time

SIGNATURE_MAX_AGE = 300


def check_signature(secret, header, body, now=None):
    """Tenantd-Signature: t=UNIX,v1=hex(HMAC-SHA256(secret, "t." + body))."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    t = int(parts["t"])
    now = time.time() if now is None else now
    if abs(now - t) > SIGNATURE_MAX_AGE:
        return False
    want = hmac.new(secret, b"%d." % t + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(want, parts.get("v1", ""))


def teams_problems(msg):
    """What makes msg not a Teams Workflows message with one Adaptive Card
    (https://adaptivecards.io/schemas/adaptive-card.json); [] when valid."""
    out = []
    if msg.get("type") != "message":
        out.append("type must be 'message'")
    atts = msg.get("attachments")
    if not isinstance(atts, list) or len(atts) != 1:
        return out + ["attachments must hold one card"]
    att = atts[0]
    if att.get("contentType") != "application/vnd.microsoft.card.adaptive":
        out.append("contentType must be application/vnd.microsoft.card.adaptive")
    if "contentUrl" in att and att["contentUrl"] is not None:
        out.append("contentUrl must be null")
    card = att.get("content") or {}
    if card.get("type") != "AdaptiveCard":
        out.append("content.type must be AdaptiveCard")
    if card.get("$schema") != "http://adaptivecards.io/schemas/adaptive-card.json":
        out.append("content.$schema must name the Adaptive Card schema")
    if card.get("version") not in ("1.0", "1.1", "1.2", "1.3", "1.4", "1.5"):
        out.append("content.version must be 1.0 to 1.5")
    body = card.get("body")
    if not isinstance(body, list) or not body:
        return out + ["content.body must be a non-empty list"]
    for i, el in enumerate(body):
        kind = el.get("type")
        if kind == "TextBlock":
            if not isinstance(el.get("text"), str):
                out.append("body[%d].text must be a string" % i)
            if el.get("size", "Default") not in ("Default", "Small", "Medium", "Large", "ExtraLarge"):
                out.append("body[%d].size is not a TextBlock size" % i)
            if el.get("weight", "Default") not in ("Default", "Lighter", "Bolder"):
                out.append("body[%d].weight is not a TextBlock weight" % i)
        elif kind == "FactSet":
            facts = el.get("facts")
            if not isinstance(facts, list) or not facts or not all(
                    isinstance(f.get("title"), str) and isinstance(f.get("value"), str)
                    for f in facts):
                out.append("body[%d].facts must be {title, value} strings" % i)
        else:
            out.append("body[%d].type %r is not expected here" % (i, kind))
    return out


class Receiver:
    """Receiver(certs, secret=b"...", fmt="json").start(); .url; .deliveries."""

    def __init__(self, certs, secret=None, fmt="json"):
        self.certs, self.secret, self.fmt = certs, secret, fmt
        self.mode = "ok"           # ok | fail | 429 | hang
        self.deliveries = []
        self.lock = threading.Lock()

    def start(self):
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                rec = {"path": self.path, "headers": dict(self.headers), "body": body,
                       "mode": receiver.mode, "problems": []}
                try:
                    rec["json"] = json.loads(body)
                except ValueError:
                    rec["json"] = None
                    rec["problems"].append("body is not JSON")
                if receiver.secret is not None:
                    sig = self.headers.get("Tenantd-Signature")
                    rec["signature_ok"] = sig is not None and check_signature(
                        receiver.secret, sig, body)
                if receiver.fmt == "teams" and rec["json"] is not None:
                    rec["problems"] += teams_problems(rec["json"])
                with receiver.lock:
                    receiver.deliveries.append(rec)
                if rec["mode"] == "hang":
                    time.sleep(30)
                status = {"ok": 200, "fail": 500, "429": 429}.get(rec["mode"], 200)
                self.send_response(status)
                if status == 429:
                    self.send_header("Retry-After", "1")
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(self.certs.cert), str(self.certs.key))
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = "https://localhost:%d/hook" % self.server.server_address[1]
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def snapshot(self):
        with self.lock:
            return list(self.deliveries)

    def wait(self, pred, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = [d for d in self.snapshot() if pred(d)]
            if got:
                return got
            time.sleep(0.1)
        raise AssertionError("no matching delivery within %ss: %r" % (timeout, self.snapshot()))
