"""The webhook refuses before it reads: hostile clients against the real server (`pledgeflow
webhook`) get 4xx or are disconnected, its memory stays flat, and no table changes."""

from __future__ import annotations

import json
import os
import select
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prefect.settings import PREFECT_API_URL
from sqlalchemy.engine import Engine

from deployments.webhook import (
    MAX_CONCURRENT_REQUESTS,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    sign,
)
from pledgeflow.uploads import read_upload
from pledgeflow_bench.exports import backers
from tests.helpers import checksums, stage_export
from tests.services import BIN, free_port, process, wait_until

pytestmark = [pytest.mark.usefixtures("prefect_harness"), pytest.mark.slow]

SECRET = "limits-test-secret"
FLOOD_BYTES = 50 * 1024 * 1024
PIECE = b"x" * 65536


@dataclass
class Webhook:
    port: int
    pid: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def peak_rss_mb(self) -> float:
        """The server's peak resident memory so far (the kernel's high-water mark)."""
        status = Path(f"/proc/{self.pid}/status").read_text()
        line = next(x for x in status.splitlines() if x.startswith("VmHWM:"))
        return int(line.split()[1]) / 1024


@pytest.fixture
def webhook(db: Engine, pg_url: str, tmp_path: Path) -> Iterator[Webhook]:
    port = free_port()
    env = {
        **os.environ,
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
        "PLEDGEFLOW_DATABASE_URL": pg_url,
        "PLEDGEFLOW_WEBHOOK_SECRET": SECRET,
    }
    log = tmp_path / "webhook.log"
    args = [str(BIN / "pledgeflow"), "webhook", "--port", str(port)]
    with process(args, env, log) as proc:
        wait_until(
            lambda: httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200,
            300,  # caps, not delays: a busy machine takes minutes to import the webhook's modules
            "the webhook",
            log=log,
        )
        yield Webhook(port, proc.pid)


def send_large(port: int, *, chunked: bool) -> tuple[int, int]:
    """POST an unsigned 50 MB body as fast as the server takes it, stopping when it answers;
    return the status and how many body bytes went out before the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        head = "POST /webhooks/uploads HTTP/1.1\r\nHost: webhook\r\n"
        head += (
            "Transfer-Encoding: chunked\r\n\r\n"
            if chunked
            else f"Content-Length: {FLOOD_BYTES}\r\n\r\n"
        )
        sock.sendall(head.encode())
        sent = 0
        framed = b"%x\r\n" % len(PIECE) + PIECE + b"\r\n" if chunked else PIECE
        while sent < FLOOD_BYTES:
            if select.select([sock], [], [], 0.01)[0]:
                break
            try:
                sock.sendall(framed)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(PIECE)
        answer = sock.recv(4096)
    return int(answer.split(b" ", 2)[1]), sent


def signed(webhook: Webhook, body: bytes) -> httpx.Response:
    stamp = str(int(time.time()))
    return httpx.post(
        f"{webhook.url}/webhooks/uploads",
        content=body,
        headers={
            TIMESTAMP_HEADER: stamp,
            SIGNATURE_HEADER: sign(SECRET, stamp, body),
            "Content-Type": "application/json",
        },
        timeout=30,
    )


def seconds_until_closed(port: int, partial: bytes) -> tuple[float, bytes]:
    """Send part of a request, then nothing; how long until the server closes, and what it
    said before closing."""
    with socket.create_connection(("127.0.0.1", port), timeout=90) as sock:
        sock.sendall(partial)
        started = time.monotonic()
        said = b""
        while part := sock.recv(4096):
            said += part
        return time.monotonic() - started, said


def test_hostile_clients_get_4xx_or_are_dropped_and_nothing_changes(
    db: Engine, tmp_path: Path, webhook: Webhook
) -> None:
    upload_id = stage_export(
        tmp_path,
        "stored.csv",
        backers(5),
        shop="shop.example.com",
        project="Campaign",
        chunk_size=5,
    )
    before = checksums(db)
    rss_before = webhook.peak_rss_mb()

    with ThreadPoolExecutor(max_workers=12) as pool:
        half_body = pool.submit(
            seconds_until_closed,
            webhook.port,
            b"POST /webhooks/uploads HTTP/1.1\r\nHost: webhook\r\nContent-Length: 40\r\n\r\n"
            b'{"upload_',
        )
        half_head = pool.submit(
            seconds_until_closed, webhook.port, b"POST /webhooks/uploads HTTP/1.1\r\nHost: web"
        )
        flood = [pool.submit(send_large, webhook.port, chunked=n % 2 == 1) for n in range(10)]
        answers = [f.result(timeout=120) for f in flood]
        body_wait, body_said = half_body.result(timeout=90)
        head_wait, _ = half_head.result(timeout=90)

    peak = webhook.peak_rss_mb()
    assert [status for status, _ in answers] == [413] * 10, answers
    # Refused after at most a few pieces of 64 KiB each, never after reading 50 MB.
    assert max(sent for _, sent in answers) < FLOOD_BYTES / 10, answers
    assert peak < 300, f"peak RSS {peak:.0f} MB (before the flood {rss_before:.0f} MB)"
    assert body_wait < 60 and b" 408 " in body_said, (body_wait, body_said)
    assert head_wait < 60, head_wait

    too_large = signed(webhook, json.dumps({"upload_id": 2**63}).encode())
    negative = signed(webhook, json.dumps({"upload_id": -1}).encode())
    largest = signed(webhook, json.dumps({"upload_id": 2**63 - 1}).encode())
    assert (too_large.status_code, negative.status_code) == (422, 422)
    assert too_large.json()["error"] == "malformed_body"
    # The largest bigint is well-formed: looked up, and unknown.
    assert largest.status_code == 404, largest.text
    # A BigInt id serialised as its decimal string (what a TypeScript client sends) is read as
    # the number; any other string is malformed.
    for bad in ("42x", "-1", "9223372036854775808"):
        answer = signed(webhook, json.dumps({"upload_id": bad}).encode())
        assert answer.status_code == 422, (bad, answer.text)
    as_string = signed(webhook, json.dumps({"upload_id": str(2**63 - 1)}).encode())
    assert as_string.status_code == 404, as_string.text

    assert checksums(db) == before
    stored = read_upload(upload_id)
    assert stored.status == "PENDING"
    print(
        f"\nFAULT webhook: peak RSS {rss_before:.0f} -> {peak:.0f} MB under ten 50 MB bodies, "
        f"at most {max(sent for _, sent in answers) / 1024:.0f} KiB sent before the 413; "
        f"half-sent body closed after {body_wait:.1f} s, half-sent head after {head_wait:.1f} s"
    )


def test_connections_beyond_the_bound_get_503_and_it_serves_again_once_they_close(
    webhook: Webhook,
) -> None:
    held = [
        socket.create_connection(("127.0.0.1", webhook.port), timeout=30)
        for _ in range(MAX_CONCURRENT_REQUESTS)
    ]
    try:
        time.sleep(1)  # accepted by the server (a head has 10 s to arrive)
        beyond = httpx.get(f"{webhook.url}/healthz", timeout=30)
    finally:
        for sock in held:
            sock.close()

    assert beyond.status_code == 503, beyond.text
    wait_until(
        lambda: httpx.get(f"{webhook.url}/healthz", timeout=5).status_code == 200,
        30,
        "the webhook serving again",
    )
