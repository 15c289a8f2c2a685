"""Log shipping to Azure Monitor Logs against the emulator: delivery under
faults, kill -9, tokens (IMDS, client secret, client certificate, expiry,
401), 413 splitting, dead letters, the queue limit under a long outage,
and the legacy Data Collector signature.

Scale knobs (environment): SHIP_LOAD_RECORDS (default 200000),
SHIP_OUTAGE_SECONDS (default 20 for the fault test) and
SHIP_LONG_OUTAGE_SECONDS (default 40; the issue's full run is 600)."""
import base64
import datetime
import hashlib
import hmac
import json
import os
import signal
import time

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from azure_emulator import Emulator, legacy_signature

OPS = "Custom-TenantdOps_CL"
LOAD = int(os.environ.get("SHIP_LOAD_RECORDS", "200000"))
OUTAGE = float(os.environ.get("SHIP_OUTAGE_SECONDS", "20"))
LONG_OUTAGE = float(os.environ.get("SHIP_LONG_OUTAGE_SECONDS", "40"))


@pytest.fixture
def emulator(certs):
    emu = Emulator(certs.cert, certs.key).start()
    yield emu
    emu.stop()


def shipping(emu, certs, **over):
    ls = {"endpoint": emu.url, "dcr_immutable_id": emu.state.dcr,
          "ca_file": str(certs.ca), "flush_interval": "200ms",
          "retry_max_delay": "2s", "health_interval": "0",
          "credential": {"type": "managed-identity", "imds_endpoint": emu.imds_url}}
    ls.update(over)
    return {"log_shipping": ls}


def status(d):
    r = d.tenantctl("--json", "shipping", "status")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def arrived(emu):
    """The test records (Kind test) that arrived, by their number."""
    out = {}
    for rec in emu.records(OPS):
        if rec.get("Kind") == "test":
            out.setdefault(rec["Properties"]["n"], []).append(rec["RecordId"])
    return out


def queue_test(d, n, pad=0):
    r = d.tenantctl("shipping", "test", "-n", str(n), "-p", str(pad))
    assert r.returncode == 0, r.stderr


def wait_for(pred, timeout, what, step=0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(step)
    raise AssertionError("not within %ss: %s" % (timeout, what))


def wait_test_records(emu, n, timeout):
    wait_for(lambda: len(arrived(emu)) >= n, timeout,
             "%d test records (have %d)" % (n, len(arrived(emu))), 0.5)


def test_ops_records_follow_the_contract(tenantd, emulator, certs):
    d = tenantd(shipping(emulator, certs))
    wait_for(lambda: any(r.get("Message") == "ready" for r in emulator.records(OPS)),
             20, "the 'ready' log line as an ops record")
    recs = emulator.records(OPS)
    assert emulator.state.violations == []
    assert len({r["RecordId"] for r in recs}) == len(recs)
    ready = [r for r in recs if r.get("Message") == "ready"][0]
    assert ready["Level"] == "info" and ready["Kind"] == "log"
    assert ready["TimeGenerated"].endswith("Z")
    assert emulator.state.imds_requests >= 1
    wait_for(lambda: status(d)["streams"]["ops"]["shipped"] >= 1, 10, "acked")
    st = status(d)
    m = d.get("/metrics").text if d.listeners else ""
    assert 'tenantd_shipping_records_shipped_total{stream="ops"}' in m
    assert "tenantd_shipping_request_duration_seconds_count" in m
    assert st["api"] == "logs-ingestion"


def test_load_with_failures_throttling_and_outage(tenantd, emulator, certs):
    f = emulator.faults
    f.fail_rate, f.throttle_rate, f.retry_after = 0.3, 0.1, 1
    d = tenantd(shipping(emulator, certs, max_in_flight=4,
                         streams={"ops": {"queue_limit": "512MiB"}}))
    queue_test(d, LOAD)
    wait_for(lambda: len(arrived(emulator)) > LOAD // 10, 120, "a tenth delivered", 0.5)
    f.outage(OUTAGE)
    wait_test_records(emulator, LOAD, 600)
    got = arrived(emulator)
    assert sorted(got) == list(range(LOAD))
    ids = emulator.ids()
    dups = sum(c - 1 for c in ids.values() if c > 1)
    assert dups < LOAD / 100, "duplicates: %d" % dups
    assert emulator.state.violations == []
    req = emulator.state.requests
    assert req["500"] > 0 and req["429"] > 0 and req["outage"] > 0, req
    st = status(d)["streams"]["ops"]
    assert st["failed"] > 0 and st["dropped"] == 0 and st["dead_letter_records"] == 0


def test_kill9_mid_shipping_loses_nothing(tenantd, emulator, certs):
    n = 30000
    emulator.faults.delay = 0.3
    d = tenantd(shipping(emulator, certs, max_in_flight=1, max_batch_size="64KiB"))
    queue_test(d, n, 100)
    wait_for(lambda: status(d)["streams"]["ops"]["queued"] >= n, 60, "all committed")
    wait_for(lambda: len(arrived(emulator)) > 0, 30, "shipping started")
    d.kill()                # SIGKILL
    assert len(arrived(emulator)) < n, "all shipped before the kill"
    emulator.faults.delay = 0
    d.start()
    wait_test_records(emulator, n, 240)
    assert sorted(arrived(emulator)) == list(range(n))
    assert emulator.state.violations == []


def test_token_expiry_and_one_refresh_per_401(tenantd, emulator, certs):
    f = emulator.faults
    f.token_real_life = 2           # tokens die long before expires_in
    d = tenantd(shipping(emulator, certs))
    queue_test(d, 100)
    wait_test_records(emulator, 100, 30)
    time.sleep(2.5)
    fetches = emulator.state.imds_requests
    queue_test(d, 100)
    wait_for(lambda: len(arrived(emulator)) >= 100 and
             sum(len(v) for v in arrived(emulator).values()) >= 200, 30, "second round")
    assert emulator.state.requests["401"] >= 1
    assert emulator.state.imds_requests == fetches + 1, "one refresh for the 401"
    f.token_real_life = None
    before = emulator.state.imds_requests
    f.reject_tokens_once = True
    queue_test(d, 10)
    wait_for(lambda: sum(len(v) for v in arrived(emulator).values()) >= 210, 30, "third")
    assert emulator.state.imds_requests == before + 1
    assert emulator.state.violations == []


def test_imds_410_429_500_are_retried(tenantd, emulator, certs):
    emulator.faults.imds_queue = [410, 429, 500]
    d = tenantd(shipping(emulator, certs))
    queue_test(d, 50)
    wait_test_records(emulator, 50, 60)
    assert emulator.state.imds_requests >= 4
    assert emulator.state.violations == []


def test_413_splits_and_oversized_record_goes_to_dead_letter(tenantd, emulator, certs):
    emulator.faults.max_body = 64 * 1024
    d = tenantd(shipping(emulator, certs))
    queue_test(d, 300, 1000)            # ~300 KiB: one batch, split by 413s
    wait_test_records(emulator, 300, 60)
    assert emulator.state.requests["413"] >= 2
    queue_test(d, 1, 100000)            # alone over the service's limit
    wait_for(lambda: status(d)["streams"]["ops"]["dead_letter_records"] == 1, 30,
             "the oversized record dead-lettered")
    r = d.tenantctl("shipping", "status")
    assert "HTTP 413" in r.stdout, r.stdout
    queue_test(d, 20)                   # the queue keeps moving
    wait_for(lambda: sum(len(v) for v in arrived(emulator).values()) >= 320, 30,
             "records behind the oversized one")
    emulator.faults.max_body = 1024 * 1024
    assert d.tenantctl("shipping", "retry").returncode == 0
    wait_for(lambda: any(len(r["Properties"]["pad"]) == 100000
                         for r in emulator.records(OPS) if r.get("Kind") == "test"),
             30, "the dead letter re-sent")
    assert status(d)["streams"]["ops"]["dead_letter_records"] == 0
    assert emulator.state.violations == []


def test_400_dead_letters_without_blocking(tenantd, emulator, certs):
    d = tenantd(shipping(emulator, certs), start=False)
    emulator.faults.status_queue = [400]
    d.start()
    # whichever stream sends first (audit's daemon.start, or ops) gets it
    wait_for(lambda: any(s["dead_letter_records"] > 0
                         for s in status(d)["streams"].values()), 30,
             "a dead letter")
    queue_test(d, 10)
    wait_test_records(emulator, 10, 30)
    st = status(d)
    assert st["dead_letters"][0]["status"] == 400
    assert "Injected" in st["dead_letters"][0]["response"]
    assert 'tenantd_shipping_records_dead_lettered_total{stream="ops"}' in d.get("/metrics").text


def rss_kib(pid):
    for line in open("/proc/%d/status" % pid):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def test_long_outage_keeps_memory_bounded_and_drops_oldest(tenantd, emulator, certs):
    """The 10-minute outage, scaled by SHIP_LONG_OUTAGE_SECONDS."""
    limit = 1024 * 1024
    d = tenantd(shipping(emulator, certs, streams={"ops": {"queue_limit": "1MiB"}}))
    wait_for(lambda: status(d)["streams"]["ops"]["shipped"] > 0, 20, "first delivery")
    emulator.faults.outage(LONG_OUTAGE + 3600)
    rounds, rss = 0, []
    t0 = time.monotonic()
    while time.monotonic() - t0 < LONG_OUTAGE:
        queue_test(d, 2000, 300)        # ~0.7 MB per round: 10x the limit soon
        rounds += 1
        time.sleep(1)
        rss.append(rss_kib(d.proc.pid))
        st = status(d)["streams"]["ops"]
        assert st["queue_bytes"] <= limit, st
    st = status(d)["streams"]["ops"]
    assert st["dropped"] > 0, "the queue limit policy was never reached"
    assert st["queue_bytes"] <= limit
    # memory stays flat once the queue is full: compare the later half
    half = rss[len(rss) // 2:]
    assert max(half) - min(half) < 16 * 1024, rss
    r = d.get("/readyz")
    assert r.status_code == 200
    assert "degraded" in r.text
    drops = [l for l in d.snapshot() if "queue is full" in l.get("msg", "")]
    assert 1 <= len(drops) <= LONG_OUTAGE / 10 + 2, "drop notices are rate limited"
    assert not any("queue is full" in (r.get("Message") or "")
                   for r in emulator.records(OPS)), "no feedback through the sink"
    emulator.faults.outage_until = 0
    last = 2000 * rounds
    wait_for(lambda: status(d)["streams"]["ops"]["queue_records"] == 0, 60, "drained")
    seqs = sorted(int(r["RecordId"].rsplit("-o", 1)[1]) for r in emulator.records(OPS)
                  if r.get("Kind") == "test")
    newest = [q for q in seqs if q > seqs[-1] - 2000]
    assert len(newest) >= 1900, "the newest round arrived"   # oldest dropped,
    assert len(seqs) < last                                   # not the newest
    assert emulator.state.violations == []


def test_client_secret(tenantd, emulator, certs, tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("s3cr3t+/=&value\n")
    secret.chmod(0o600)
    emulator.state.secret = "s3cr3t+/=&value"
    d = tenantd(shipping(emulator, certs, credential={
        "type": "client-secret", "client_id": emulator.state.client_id,
        "client_secret": str(secret), "authority": emulator.url}))
    queue_test(d, 10)
    wait_test_records(emulator, 10, 30)
    assert emulator.state.token_requests >= 1
    assert emulator.state.violations == []


def test_client_certificate(tenantd, emulator, certs, tmp_path):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tenantd shipper")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    pem = cert.public_bytes(serialization.Encoding.PEM)
    (tmp_path / "app.pem").write_bytes(pem)
    (tmp_path / "app.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    (tmp_path / "app.key").chmod(0o600)
    emulator.state.cert_pem = pem
    d = tenantd(shipping(emulator, certs, credential={
        "type": "client-certificate", "client_id": emulator.state.client_id,
        "certificate": str(tmp_path / "app.pem"), "key": str(tmp_path / "app.key"),
        "authority": emulator.url}))
    queue_test(d, 10)
    wait_test_records(emulator, 10, 30)
    assert emulator.state.violations == []


def test_legacy_signature_known_vector():
    """A vector computed here with Python's hmac, independent of tenantd."""
    key = base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
    date = "Mon, 02 Mar 2026 10:00:00 GMT"
    text = "POST\n1234\napplication/json\nx-ms-date:%s\n/api/logs" % date
    want = base64.b64encode(hmac.new(base64.b64decode(key), text.encode(),
                                     hashlib.sha256).digest()).decode()
    assert legacy_signature(key, 1234, date) == want
    assert want == "1UEYewLBZaM44Yb1YRWioWSM6GAAcG0fAhM9vXbxcWY="


def test_data_collector_api(tenantd, emulator, certs, tmp_path):
    raw = os.urandom(64)
    key = base64.b64encode(raw).decode()
    (tmp_path / "wskey").write_text(key + "\n")
    (tmp_path / "wskey").chmod(0o600)
    emulator.state.shared_key = key
    emulator.state.streams.add("TenantdOps")
    d = tenantd({"log_shipping": {
        "api": "data-collector", "endpoint": emulator.url,
        "workspace_id": emulator.state.workspace_id, "shared_key": str(tmp_path / "wskey"),
        "ca_file": str(certs.ca), "flush_interval": "200ms", "health_interval": "0"}})
    d.wait_log("ended its support")
    queue_test(d, 25)
    wait_for(lambda: sum(1 for r in emulator.records("TenantdOps")
                         if r.get("Kind") == "test") >= 25, 30, "legacy records")
    assert emulator.state.violations == []


def test_config_errors(tenantd, certs, tmp_path):
    d = tenantd({"log_shipping": {"api": "logs-ingestion"}}, start=False)
    from conftest import run_tenantd
    r = run_tenantd("-n", "-c", str(d.conf_path))
    assert r.returncode == 1
    assert "needs 'endpoint' and 'dcr_immutable_id'" in r.stderr
    d.write_config(dict(d.conf, log_shipping={
        "endpoint": "http://example.com", "dcr_immutable_id": "x",
        "credential": {"type": "client-secret"}}))
    r = run_tenantd("-n", "-c", str(d.conf_path))
    assert "must start with https://" in r.stderr
    assert "needs 'client_id'" in r.stderr


AUDIT = "Custom-TenantdAudit_CL"


def test_audit_records_and_checkpoints_shipped_from_the_log(tenantd, emulator, certs):
    """The audit stream reads the audit log by its cursor: every record,
    checkpoints included, arrives with the log's seq and chain hash."""
    d = tenantd(shipping(emulator, certs))
    for _ in range(3):
        assert d.tenantctl("status").returncode == 0
    d.stop()                    # writes daemon.stop and a last checkpoint
    d.start()                   # the cursor resumes after the last shipped
    assert d.tenantctl("status").returncode == 0
    r = d.tenantctl("audit", "export", "--format", "jsonl")
    assert r.returncode == 0, r.stderr
    local = [json.loads(l) for l in r.stdout.splitlines() if l.strip()]
    wanted = {rec["seq"]: rec for rec in local}
    got = {}

    def shipped_all():
        for rec in emulator.records(AUDIT):
            got.setdefault(rec["Seq"], []).append(rec)
        return set(wanted) <= set(got)

    wait_for(shipped_all, 30, "every audit record up to seq %d" % max(wanted))
    assert emulator.state.violations == []
    for seq, rec in wanted.items():
        row = got[seq][0]
        assert row["RecordId"] == "audit-%d" % seq
        assert row["Hash"] == rec["hash"] and row["Action"] == rec["action"]
        assert row["Kind"] == ("checkpoint" if rec["action"] == "audit.checkpoint" else "record")
        assert row["TimeGenerated"] == rec["ts"]
    assert any(r["Kind"] == "checkpoint" for rows in got.values() for r in rows)
    dup = sum(len(v) - 1 for v in got.values())
    assert dup <= len(got) // 100 + 1
