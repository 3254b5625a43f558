"""Webhooks (unit tier): the URL checked at admission, the signature, the retry schedule, the SSRF
defence after DNS (a resolver and a connector injected, so no test sends a packet beyond 127.0.0.0/8),
deliveries queued once a job has ended, retried and recorded, on the API and the execution page."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import socket
import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from executions import outbound
from executions.models import ApiKey, Environment, Execution, WebhookAttempt, WebhookDelivery
from executions.sandbox.classify import Outcome, failure
from executions.services import lifecycle, webhooks
from tests.support import Receiver, verify_signature

pytestmark = pytest.mark.django_db
SECRET = "deployment-secret-for-tests"
HOOK = "https://hooks.example.invalid/tako"
SUCCEEDED = Outcome("succeeded")


@pytest.fixture(autouse=True)
def _webhook_settings(settings: Any) -> None:
    settings.TAKO_WEBHOOK_SECRET = SECRET
    settings.TAKO_WEBHOOK_ALLOW_PRIVATE = False
    settings.TAKO_WEBHOOK_TIMEOUT = 2.0


@pytest.fixture
def receiver() -> Any:
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def queued_tasks(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    """What webhooks hand to the queue (no cluster runs in this tier)."""
    tasks: list[tuple[Any, ...]] = []
    monkeypatch.setattr(webhooks, "async_task", lambda *args, **kwargs: tasks.append((args, kwargs)))
    return tasks


def refused(host: str, kind: str) -> str:
    return f"webhook_url's host {host} is {kind}, which webhooks may not target"


def submit(api: Any, url: str, **extra: Any) -> Any:
    return api.post("/execute/async", {"code": "print(1)", "webhook_url": url}, **extra)


# -- admission ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.com/x", "webhook_url must be an http or https URL such as https://example.com/hook"),
        ("example.com/hook", "webhook_url must be an http or https URL such as https://example.com/hook"),
        ("https://", "webhook_url must be an http or https URL such as https://example.com/hook"),
        ("https://example.com:99999/", "webhook_url must be an http or https URL such as https://example.com/hook"),
        ("https://user:pw@example.com/", "webhook_url must not contain credentials (deliveries are signed instead)"),
        ("https://example.com/a b", "webhook_url must not contain spaces or control characters"),
        ("https://bücher.example/", "webhook_url must be ASCII: write an international name in punycode (xn--…) and escape the rest (%XX)"),  # noqa: E501
        ("https://example.com/\ud800", "webhook_url must be ASCII: write an international name in punycode (xn--…) and escape the rest (%XX)"),  # noqa: E501
        ("https://example.com/" + "x" * 2030, "webhook_url exceeds size limit (2048 characters)"),
        ("http://127.0.0.1:8000/hook", refused("127.0.0.1", "a loopback address")),
        ("http://2130706433/", refused("127.0.0.1", "a loopback address")),
        ("http://0x7f.1/", refused("127.0.0.1", "a loopback address")),
        ("http://[::1]/", refused("::1", "a loopback address")),
        ("http://10.1.2.3/", refused("10.1.2.3", "a private address")),
        ("http://169.254.169.254/latest/meta-data/", refused("169.254.169.254", "a cloud metadata address")),
        ("http://[::ffff:192.168.0.1]/", refused("::ffff:c0a8:1", "a private address (192.168.0.1 embedded)")),
    ],
)  # fmt: skip
def test_it_refuses_a_bad_webhook_url_naming_the_field(api_nodocker: Any, url: str, message: str) -> None:
    response = submit(api_nodocker, url)
    assert response.status_code == 422
    assert response.json()["errors"] == {"webhook_url": [message]}
    assert Execution.objects.count() == 0


def test_it_accepts_a_public_url_and_makes_the_delivery(api_nodocker: Any) -> None:
    response = submit(api_nodocker, HOOK)
    assert response.status_code == 202
    execution = Execution.objects.get(pk=response.json()["job_id"])
    assert execution.webhook_url == HOOK
    assert (execution.webhook.state, execution.webhook.keyed, execution.webhook.attempts) == ("waiting", False, 0)


def test_private_targets_are_accepted_when_allowed_but_never_metadata(api_nodocker: Any, settings: Any) -> None:
    settings.TAKO_WEBHOOK_ALLOW_PRIVATE = True
    assert submit(api_nodocker, "http://127.0.0.1:9/hook").status_code == 202
    refused = submit(api_nodocker, "http://169.254.169.254/")
    assert refused.status_code == 422 and "cloud metadata" in refused.json()["detail"]


def test_sync_execute_takes_no_webhook(api_nodocker: Any) -> None:
    response = api_nodocker.post("/execute", {"code": "print(1)", "webhook_url": HOOK})
    assert response.status_code == 422
    assert response.json()["errors"] == {"webhook_url": ["Unknown field 'webhook_url'"]}


def test_without_a_key_or_a_deployment_secret_a_webhook_is_refused(api_nodocker: Any, settings: Any) -> None:
    settings.TAKO_WEBHOOK_SECRET = ""
    response = submit(api_nodocker, HOOK)
    assert response.status_code == 422
    assert response.json()["errors"]["webhook_url"][0].startswith("webhook_url needs an API key")
    assert Execution.objects.count() == 0 and WebhookDelivery.objects.count() == 0


def test_the_idempotency_key_covers_the_webhook_url(api_nodocker: Any) -> None:
    first = api_nodocker.post("/execute/async", {"code": "1", "idempotency_key": "hook-key-1", "webhook_url": HOOK})
    again = api_nodocker.post("/execute/async", {"code": "1", "idempotency_key": "hook-key-1", "webhook_url": HOOK})
    other = api_nodocker.post(
        "/execute/async", {"code": "1", "idempotency_key": "hook-key-1", "webhook_url": HOOK + "/other"}
    )
    assert (first.status_code, again.status_code, other.status_code) == (202, 200, 409)


# -- signing and the schedule --------------------------------------------------------------------------
def test_the_signature_is_the_hmac_sha256_of_the_raw_body() -> None:
    body = b'{"execution_id":"x","status":"succeeded"}'
    headers = webhooks.webhook_headers(body, secret="s3cret", delivery_id="d-1")
    expected = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert headers["X-Tako-Signature"] == f"sha256={expected}"
    assert (headers["X-Tako-Event"], headers["X-Tako-Delivery"]) == ("execution.finished", "d-1")
    assert verify_signature(headers, body, "s3cret") and not verify_signature(headers, body + b" ", "s3cret")


def test_the_retry_schedule_doubles_over_about_ten_minutes(settings: Any) -> None:
    schedule = webhooks.retry_schedule()
    assert schedule == [20, 40, 80, 160, 320]  # the defaults: 6 attempts
    assert len(schedule) + 1 >= 5 and 9 * 60 <= sum(schedule) <= 11 * 60
    settings.TAKO_WEBHOOK_ATTEMPTS, settings.TAKO_WEBHOOK_BACKOFF_SECONDS = 4, 0.5
    assert webhooks.retry_schedule() == [0.5, 1.0, 2.0]


# -- the SSRF defence -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "a loopback address"), ("127.8.9.10", "a loopback address"), ("::1", "a loopback address"),
        ("10.0.0.1", "a private address"), ("172.16.5.4", "a private address"), ("192.168.1.1", "a private address"),
        ("fd12::1", "a private address"), ("169.254.1.1", "a link-local address"), ("fe80::1", "a link-local address"),
        ("100.64.0.1", "not a public address"), ("240.0.0.1", "a private address"),
        ("0.0.0.0", "the unspecified address"),  # noqa: S104
        ("224.0.0.1", "a multicast address"), ("ff02::1", "a multicast address"),
        ("169.254.169.254", "a cloud metadata address"), ("fd00:ec2::254", "a cloud metadata address"),
        ("100.100.100.200", "a cloud metadata address"),
        ("::ffff:127.0.0.1", "a loopback address (127.0.0.1 embedded)"),
        ("2002:a00:1::", "a private address (10.0.0.1 embedded)"),
        ("64:ff9b::a9fe:a9fe", "a cloud metadata address (169.254.169.254 embedded)"),
        ("93.184.216.34", None), ("2606:2800:220:1:248:1893:25c8:1946", None),
    ],
)  # fmt: skip
def test_it_knows_which_addresses_are_refused(address: str, reason: str | None) -> None:
    assert outbound.refusal(ipaddress.ip_address(address), allow_private=False) == reason


def test_allowing_private_targets_still_refuses_metadata_multicast_and_unspecified() -> None:
    for allowed in ("127.0.0.1", "10.0.0.1", "::1", "fe80::1"):
        assert outbound.refusal(ipaddress.ip_address(allowed), allow_private=True) is None
    for refused in ("169.254.169.254", "224.0.0.1", "0.0.0.0"):  # noqa: S104
        assert outbound.refusal(ipaddress.ip_address(refused), allow_private=True) is not None


class FakeNetwork:
    """A resolver and a connector standing in for DNS and TCP: the connector hands back one end of
    a socket pair whose other end answers like an HTTP server, so nothing leaves the process."""

    def __init__(self, answers: list[list[str]], status: int = 204) -> None:
        self.answers = answers
        self.status = status
        self.lookups: list[str] = []
        self.connects: list[tuple[str, int]] = []
        self.requests: list[bytes] = []

    def resolve(self, host: str, port: int) -> list[str]:
        self.lookups.append(host)
        return self.answers[min(len(self.lookups), len(self.answers)) - 1]

    def connect(self, address: str, port: int, timeout: float) -> socket.socket:
        self.connects.append((address, port))
        ours, theirs = socket.socketpair()
        threading.Thread(target=self._serve, args=(theirs,), daemon=True).start()
        return ours

    def _serve(self, sock: socket.socket) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(65536)
        head, _, body = data.partition(b"\r\n\r\n")
        length = int(
            next(
                v
                for k, v in (line.split(b": ", 1) for line in head.split(b"\r\n")[1:])
                if k.lower() == b"content-length"
            )
        )
        while len(body) < length:
            body += sock.recv(65536)
        self.requests.append(head + b"\r\n\r\n" + body)
        sock.sendall(f"HTTP/1.1 {self.status} Whatever\r\nContent-Length: 0\r\n\r\n".encode())
        sock.close()


def test_a_rebinding_name_is_resolved_once_and_the_checked_address_is_the_one_connected() -> None:
    # The name answers a public address first and loopback afterwards: a second lookup would be a hole.
    network = FakeNetwork([["93.184.216.34"], ["127.0.0.1"]])
    sent = outbound.post(
        "http://rebind.example.test:8080/hook?x=1", b"{}", {"X-Test": "1"},
        timeout=2, allow_private=False, resolver=network.resolve, connector=network.connect,
    )  # fmt: skip
    assert (sent.ok, sent.status_code, sent.address) == (True, 204, "93.184.216.34")
    assert network.lookups == ["rebind.example.test"]
    assert network.connects == [("93.184.216.34", 8080)]
    request = network.requests[0].decode()
    assert request.startswith("POST /hook?x=1 HTTP/1.1\r\n")
    assert "Host: rebind.example.test:8080\r\n" in request  # the name, never the address


def test_a_name_with_any_refused_address_is_refused_without_connecting() -> None:
    network = FakeNetwork([["93.184.216.34", "10.0.0.7"]])
    sent = outbound.post(
        HOOK, b"{}", {}, timeout=2, allow_private=False, resolver=network.resolve, connector=network.connect
    )
    assert (sent.ok, sent.refused, sent.status_code) == (False, True, None)
    assert sent.error == "Refused target hooks.example.invalid (10.0.0.7): a private address"
    assert network.connects == []


def test_https_connects_to_the_checked_address_with_the_names_tls_server_name() -> None:
    wrapped: list[str | None] = []

    class RecordingContext:
        def wrap_socket(self, sock: socket.socket, server_hostname: str | None = None) -> socket.socket:
            wrapped.append(server_hostname)
            raise OSError("stop here: no TLS server in this test")

    network = FakeNetwork([["93.184.216.34"]])
    sent = outbound.post(
        HOOK, b"{}", {}, timeout=2, allow_private=False, resolver=network.resolve,
        connector=network.connect, tls=RecordingContext(),  # type: ignore[arg-type]
    )  # fmt: skip
    assert network.connects == [("93.184.216.34", 443)] and wrapped == ["hooks.example.invalid"]
    assert not sent.ok and not sent.refused


def test_a_receiver_that_never_answers_or_trickles_is_cut_at_the_timeout() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    kept: list[socket.socket] = []

    def trickle() -> None:
        conn, _ = listener.accept()
        kept.append(conn)
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\n")
        for _ in range(50):  # a header line a byte at a time, each well within a socket timeout
            time.sleep(0.1)
            try:
                conn.sendall(b"X")
            except OSError:
                return

    threading.Thread(target=trickle, daemon=True).start()
    started = time.monotonic()
    sent = outbound.post(f"http://127.0.0.1:{port}/", b"{}", {}, timeout=0.6, allow_private=True)
    assert time.monotonic() - started < 1.5
    assert (sent.ok, sent.status_code, sent.error) == (False, None, "No answer within 0.6 s")
    listener.close()


# -- deliveries ------------------------------------------------------------------------------------------
def _job(url: str, *, api_key: ApiKey | None = None) -> Execution:
    execution = webhooks_execution(url)
    webhooks.webhook_delivery_create(execution, api_key=api_key)
    return execution


def webhooks_execution(url: str) -> Execution:
    from executions.services import execution_create

    return execution_create(
        code="print(1)", input_data={}, environment=Environment.objects.get(name="default"), is_async=True,
        webhook_url=url,
    )  # fmt: skip


def _end(execution: Execution, django_capture_on_commit_callbacks: Any) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        assert lifecycle.end(execution, SUCCEEDED)


def test_a_job_without_a_webhook_queues_nothing_when_it_ends(django_capture_on_commit_callbacks: Any) -> None:
    execution = webhooks_execution("")
    with django_capture_on_commit_callbacks() as callbacks:
        lifecycle.end(execution, SUCCEEDED)
    assert callbacks == []


def test_the_end_queues_the_delivery_on_the_webhook_queue_once(
    django_capture_on_commit_callbacks: Any, queued_tasks: list[Any]
) -> None:
    execution = _job(HOOK)
    _end(execution, django_capture_on_commit_callbacks)
    assert queued_tasks == [
        (
            ("executions.tasks.deliver_webhook", str(execution.pk)),
            {"cluster": "tako-webhooks", "task_name": f"webhook-{execution.pk}"},
        )
    ]
    assert WebhookDelivery.objects.get().state == "queued"
    assert webhooks.webhook_queue(execution.pk) is False  # not twice
    assert len(queued_tasks) == 1


def test_a_delivery_posts_the_signed_record(
    settings: Any, receiver: Receiver, django_capture_on_commit_callbacks: Any, queued_tasks: list[Any]
) -> None:
    settings.TAKO_WEBHOOK_ALLOW_PRIVATE = True
    execution = _job(receiver.url)
    _end(execution, django_capture_on_commit_callbacks)
    delivery = webhooks.webhook_deliver(execution.pk)
    assert delivery is not None and (delivery.state, delivery.attempts) == ("delivered", 1)
    [(headers, body, _)] = receiver.received
    assert verify_signature(headers, body, SECRET)
    assert headers["X-Tako-Event"] == "execution.finished"
    assert headers["X-Tako-Delivery"] == str(delivery.pk)
    assert headers["Content-Type"] == "application/json"
    execution.refresh_from_db()
    assert json.loads(body) == execution.to_dict()  # GET /executions/{id}'s default view
    assert webhooks.webhook_deliver(execution.pk) is None  # nothing queued: no second POST
    assert len(receiver.received) == 1


def test_a_failing_receiver_is_retried_on_schedule_and_every_attempt_recorded(
    settings: Any, django_capture_on_commit_callbacks: Any, queued_tasks: list[Any], api_nodocker: Any
) -> None:
    settings.TAKO_WEBHOOK_ALLOW_PRIVATE = True
    receiver = Receiver(answers=[500, 503])
    try:
        execution = _job(receiver.url)
        _end(execution, django_capture_on_commit_callbacks)
        first = webhooks.webhook_deliver(execution.pk)
        assert first is not None and first.state == "retrying"
        assert first.next_attempt_at is not None
        wait = (first.next_attempt_at - WebhookAttempt.objects.get().at).total_seconds()
        assert 19.9 < wait < 21
        assert webhooks.webhooks_due() == 0  # not yet
        assert webhooks.webhooks_due(timezone.now() + timedelta(seconds=21)) == 1
        second = webhooks.webhook_deliver(execution.pk)
        assert second is not None and second.state == "retrying"
        assert 39 < (second.next_attempt_at - timezone.now()).total_seconds() < 41  # doubled
        webhooks.webhooks_due(timezone.now() + timedelta(seconds=41))
        third = webhooks.webhook_deliver(execution.pk)
        assert third is not None and (third.state, third.attempts) == ("delivered", 3)
    finally:
        receiver.close()
    listed = api_nodocker.get(f"/jobs/{execution.pk}/webhooks").json()
    assert [(a["attempt"], a["status_code"], a["error"]) for a in listed] == [
        (1, 500, "HTTP 500 Internal Server Error"),
        (2, 503, "HTTP 503 Service Unavailable"),
        (3, 200, None),
    ]
    assert all(a["at"].endswith("Z") for a in listed)


def test_after_the_last_attempt_the_delivery_fails(
    settings: Any, django_capture_on_commit_callbacks: Any, queued_tasks: list[Any]
) -> None:
    settings.TAKO_WEBHOOK_ALLOW_PRIVATE, settings.TAKO_WEBHOOK_ATTEMPTS = True, 2
    receiver = Receiver(answers=[500, 500, 500])
    try:
        execution = _job(receiver.url)
        _end(execution, django_capture_on_commit_callbacks)
        webhooks.webhook_deliver(execution.pk)
        webhooks.webhooks_due(timezone.now() + timedelta(minutes=1))
        last = webhooks.webhook_deliver(execution.pk)
    finally:
        receiver.close()
    assert last is not None and (last.state, last.attempts, last.next_attempt_at) == ("failed", 2, None)
    assert webhooks.webhooks_due(timezone.now() + timedelta(days=1)) == 0


def test_a_refused_target_is_one_recorded_failure_never_retried(
    receiver: Receiver, django_capture_on_commit_callbacks: Any, queued_tasks: list[Any], settings: Any
) -> None:
    # Admitted while private targets were allowed (or through a name): refused at send time.
    execution = _job(receiver.url)
    _end(execution, django_capture_on_commit_callbacks)
    delivery = webhooks.webhook_deliver(execution.pk)
    assert delivery is not None and (delivery.state, delivery.attempts) == ("failed", 1)
    attempt = WebhookAttempt.objects.get()
    assert (attempt.status_code, attempt.error) == (None, "Refused target 127.0.0.1: a loopback address")
    assert receiver.received == []


def test_a_name_resolving_inside_is_refused_at_send_time(
    django_capture_on_commit_callbacks: Any, queued_tasks: list[Any]
) -> None:
    execution = _job("http://localhost:9/hook")  # a name: only DNS can tell
    _end(execution, django_capture_on_commit_callbacks)
    delivery = webhooks.webhook_deliver(execution.pk)
    assert delivery is not None and delivery.state == "failed"
    assert WebhookAttempt.objects.get().error.startswith("Refused target localhost (")


def test_a_keys_job_is_signed_with_the_keys_webhook_secret(
    settings: Any, receiver: Receiver, django_capture_on_commit_callbacks: Any, queued_tasks: list[Any]
) -> None:
    settings.TAKO_WEBHOOK_ALLOW_PRIVATE = True
    owner = User.objects.create_user("hooker", password="pw-for-tests-only")
    settings.TAKO_ALLOW_ANONYMOUS = False
    key, secret = ApiKey.issue(name="hooks", owner=owner)
    assert key.webhook_secret.startswith("whsec_") and key.webhook_secret != secret
    response = Client().post(
        "/execute/async", json.dumps({"code": "print(1)", "webhook_url": receiver.url}),
        content_type="application/json", HTTP_X_API_KEY=secret,
    )  # fmt: skip
    assert response.status_code == 202
    delivery = WebhookDelivery.objects.get()
    assert (delivery.keyed, delivery.api_key) == (True, key)
    old = key.webhook_secret
    rotated = key.rotate_webhook_secret()  # rotated before it is sent: the new secret signs
    assert rotated != old
    _end(delivery.execution, django_capture_on_commit_callbacks)
    webhooks.webhook_deliver(delivery.execution_id)
    [(headers, body, _)] = receiver.received
    assert verify_signature(headers, body, rotated) and not verify_signature(headers, body, SECRET)


def test_a_deleted_keys_delivery_fails_unsigned(
    receiver: Receiver, django_capture_on_commit_callbacks: Any, queued_tasks: list[Any], settings: Any
) -> None:
    settings.TAKO_WEBHOOK_ALLOW_PRIVATE = True
    key, _ = ApiKey.issue(name="gone", owner=User.objects.create_user("gone", password="pw-for-tests-only"))
    execution = _job(receiver.url, api_key=key)
    key.delete()
    _end(execution, django_capture_on_commit_callbacks)
    delivery = webhooks.webhook_deliver(execution.pk)
    assert delivery is not None and delivery.state == "failed" and receiver.received == []
    assert "was deleted" in WebhookAttempt.objects.get().error


def test_a_cancelled_job_is_delivered_too(django_capture_on_commit_callbacks: Any, queued_tasks: list[Any]) -> None:
    execution = _job(HOOK)
    with django_capture_on_commit_callbacks(execute=True):
        lifecycle.end(execution, failure("cancelled", "Cancelled before it started", phase="startup"))
    assert WebhookDelivery.objects.get().state == "queued" and len(queued_tasks) == 1


def test_lost_tasks_and_forgotten_deliveries_are_recovered(queued_tasks: list[Any]) -> None:
    stuck = _job(HOOK)
    WebhookDelivery.objects.filter(execution=stuck).update(
        state="sending", state_changed_at=timezone.now() - timedelta(minutes=10)
    )
    forgotten = _job(HOOK)
    Execution.objects.filter(pk=forgotten.pk).update(status="succeeded", ended_at=timezone.now() - timedelta(hours=1))
    running = _job(HOOK)
    assert webhooks.webhooks_recover() == 2
    states = {d.execution_id: d.state for d in WebhookDelivery.objects.all()}
    assert states == {stuck.pk: "retrying", forgotten.pk: "queued", running.pk: "waiting"}


def test_the_broker_being_down_leaves_the_delivery_for_the_sweep(
    monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks: Any
) -> None:
    def broker_down(*args: Any, **kwargs: Any) -> None:
        raise ConnectionError("broker down")

    monkeypatch.setattr(webhooks, "async_task", broker_down)
    execution = _job(HOOK)
    _end(execution, django_capture_on_commit_callbacks)  # the job's end is unaffected
    execution.refresh_from_db()
    assert execution.status == "succeeded"
    delivery = WebhookDelivery.objects.get()
    assert delivery.state == "retrying" and delivery.next_attempt_at is not None


# -- visibility and the page --------------------------------------------------------------------------
def test_the_attempts_follow_the_jobs_visibility(api_nodocker: Any, settings: Any) -> None:
    settings.TAKO_ALLOW_ANONYMOUS = False
    alice = User.objects.create_user("alice", password="pw-for-tests-only")
    bob = User.objects.create_user("bob", password="pw-for-tests-only")
    execution = _job(HOOK)
    Execution.objects.filter(pk=execution.pk).update(submitted_by=alice)
    alices, bobs = ApiKey.issue(name="a", owner=alice)[1], ApiKey.issue(name="b", owner=bob)[1]
    assert api_nodocker.get(f"/jobs/{execution.pk}/webhooks", HTTP_X_API_KEY=alices).json() == []
    assert api_nodocker.get(f"/jobs/{execution.pk}/webhooks", HTTP_X_API_KEY=bobs).status_code == 404


def test_the_execution_page_shows_the_attempts(
    settings: Any, django_capture_on_commit_callbacks: Any, queued_tasks: list[Any]
) -> None:
    settings.TAKO_WEBHOOK_ALLOW_PRIVATE = True
    user = User.objects.create_user("analyst", password="pw-for-tests-only")
    receiver = Receiver(answers=[500])
    try:
        execution = _job(receiver.url)
        Execution.objects.filter(pk=execution.pk).update(submitted_by=user)
        _end(execution, django_capture_on_commit_callbacks)
        webhooks.webhook_deliver(execution.pk)
    finally:
        receiver.close()
    client = Client()
    client.force_login(user)
    page = client.get(f"/ui/executions/{execution.pk}/").content.decode()
    assert "Webhook" in page and receiver.url in page and "HTTP 500 Internal Server Error" in page
    assert "Retrying" in page and "every 2s" in page  # the panel polls while a retry is to come
    panel = client.get(f"/ui/executions/{execution.pk}/?panel=webhooks", HTTP_HX_REQUEST="true").content.decode()
    assert panel.lstrip().startswith('<section id="webhooks"') and "HTTP 500" in panel
    plain = webhooks_execution("")
    Execution.objects.filter(pk=plain.pk).update(submitted_by=user)
    assert 'id="webhooks"' not in client.get(f"/ui/executions/{plain.pk}/").content.decode()


def test_the_key_command_shows_and_rotates_the_webhook_secret(capsys: Any) -> None:
    User.objects.create_user("ops", password="pw-for-tests-only")
    call_command("tako_apikey", "create", "ci", "--user", "ops")
    lines = capsys.readouterr().out.splitlines()
    key = ApiKey.objects.get(key_hash=ApiKey.hash(lines[1]))
    assert lines[3] == key.webhook_secret
    call_command("tako_apikey", "rotate-webhook-secret", str(key.pk))
    rotated = capsys.readouterr().out.splitlines()[1]
    key.refresh_from_db()
    assert rotated == key.webhook_secret != lines[3]


def test_an_admin_sees_a_new_keys_webhook_secret_once_and_rotates_it() -> None:
    admin = User.objects.create_superuser("root", password="pw-for-tests-only")
    client = Client()
    client.force_login(admin)
    made = client.post(
        "/admin/executions/apikey/add/", {"name": "ci", "owner": admin.pk, "scope": "execute", "weight": 1}, follow=True
    ).content.decode()
    key = ApiKey.objects.get()
    assert key.webhook_secret in made  # in the message after saving, once
    assert key.webhook_secret not in client.get(f"/admin/executions/apikey/{key.pk}/change/").content.decode()
    old = key.webhook_secret
    rotated = client.post(
        "/admin/executions/apikey/", {"action": "rotate_webhook_secret", "_selected_action": [key.pk]}, follow=True
    ).content.decode()
    key.refresh_from_db()
    assert key.webhook_secret != old and key.webhook_secret in rotated
