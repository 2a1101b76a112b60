"""The stack's local SMTP server: stores what it receives in a Maildir, each idempotency key once.

`send_email` may deliver the same message twice (a retry after a timeout whose first attempt did
get through). The server recognises the second copy by its `X-Agentlog-Idempotency-Key` header,
answers `250 OK` so the sender considers it delivered, and does not store it.

Run it with `python -m processors.tools.backends.mailbox --host H --port P --maildir D`.
"""

from __future__ import annotations

import argparse
import logging
import mailbox
import signal
import threading
from email import policy
from email.message import EmailMessage
from email.parser import BytesHeaderParser, BytesParser
from email.utils import getaddresses
from pathlib import Path
from types import FrameType
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

__all__ = ["ENVELOPE_HEADER", "main", "read_mailbox", "run_smtp_server", "start_smtp_server"]

ENVELOPE_HEADER = "X-Envelope-Recipients"
_IDEMPOTENCY_HEADER = "X-Agentlog-Idempotency-Key"  # same as email.IDEMPOTENCY_HEADER
_log = logging.getLogger(__name__)


class _MaildirHandler:
    """aiosmtpd handler: one Maildir, and the idempotency keys of the messages it holds."""

    def __init__(self, maildir: str) -> None:
        self._box = mailbox.Maildir(maildir, create=True)
        self._keys = _stored_keys(self._box)

    # aiosmtpd names its hooks after the SMTP command.
    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        # No await inside: check-then-store cannot interleave with another session's DATA.
        content = envelope.original_content or b""
        headers = BytesHeaderParser(policy=policy.default).parsebytes(content)
        key = str(headers.get(_IDEMPOTENCY_HEADER, "")).strip()
        if key and key in self._keys:
            _log.info("duplicate message for idempotency key %s not stored", key)
            return "250 OK"
        stamp = (
            f"X-Envelope-From: {envelope.mail_from or ''}\n"
            f"{ENVELOPE_HEADER}: {', '.join(envelope.rcpt_tos)}\n"
        ).encode()
        try:
            # Maildir delivery writes to tmp/ and renames into new/: a reader never sees half.
            self._box.add(stamp + content.replace(b"\r\n", b"\n"))
        except OSError:
            _log.exception("cannot store message in the Maildir")
            return "451 Requested action aborted: error in processing"
        if key:
            self._keys.add(key)
        return "250 Message accepted for delivery"


def _stored_keys(box: mailbox.Maildir) -> set[str]:
    keys: set[str] = set()
    parser = BytesHeaderParser(policy=policy.default)
    for msg_key in box.iterkeys():
        # The stub types get_file() as a text file; it is binary, as BytesHeaderParser needs.
        with box.get_file(msg_key) as f:
            headers = parser.parse(f)  # type: ignore[arg-type]
        key = str(headers.get(_IDEMPOTENCY_HEADER, "")).strip()
        if key:
            keys.add(key)
    return keys


def start_smtp_server(*, host: str, port: int, maildir: str) -> Controller:
    """Start the server on a background thread and return its controller (call `.stop()`).

    host: address to listen on.
    port: TCP port to listen on.
    maildir: Maildir folder that receives the messages (created if missing).
    """
    controller = Controller(
        _MaildirHandler(maildir),
        hostname=host,
        port=port,
        # A fixed greeting name: the default asks DNS for the FQDN, which can stall startup.
        server_hostname="agentlog.local",
        enable_SMTPUTF8=True,
    )
    controller.start()
    return controller


def run_smtp_server(
    *, host: str, port: int, maildir: str, stop: threading.Event | None = None
) -> None:
    """Serve until SIGTERM/SIGINT (when called on the main thread) or until `stop` is set.

    host: address to listen on.
    port: TCP port to listen on.
    maildir: Maildir folder that receives the messages (created if missing).
    stop: event that shuts the server down when set; for callers running it on a thread.
    """
    stop_event = stop or threading.Event()
    previous: dict[signal.Signals, Any] = {}
    if threading.current_thread() is threading.main_thread():

        def on_signal(signum: int, frame: FrameType | None) -> None:
            stop_event.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, on_signal)
    controller = start_smtp_server(host=host, port=port, maildir=maildir)
    _log.info("SMTP server listening on %s:%d, storing into %s", host, port, maildir)
    try:
        # Short waits keep the main thread responsive to signals.
        while not stop_event.wait(0.5):
            pass
    finally:
        controller.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        _log.info("SMTP server stopped")


def read_mailbox(maildir: str) -> list[dict[str, Any]]:
    """Every stored message, oldest delivery first; empty when the Maildir does not exist."""
    if not Path(maildir, "new").is_dir():
        return []
    box = mailbox.Maildir(maildir, create=False)
    parser = BytesParser(policy=policy.default)
    dated = sorted((box.get_message(k).get_date(), k) for k in box.iterkeys())
    result: list[dict[str, Any]] = []
    for _, key in dated:
        msg = parser.parsebytes(box.get_bytes(key))
        assert isinstance(msg, EmailMessage)
        body_part = msg.get_body(preferencelist=("plain",))
        senders = _addresses(msg, "From")
        result.append(
            {
                "message_id": msg.get("Message-ID"),
                "idempotency_key": msg.get(_IDEMPOTENCY_HEADER),
                "from": senders[0] if senders else None,
                "to": _addresses(msg, "To"),
                "cc": _addresses(msg, "Cc"),
                "bcc": _addresses(msg, "Bcc"),
                "subject": msg.get("Subject"),
                "body": body_part.get_content() if isinstance(body_part, EmailMessage) else "",
                "envelope_recipients": [
                    r.strip() for r in str(msg.get(ENVELOPE_HEADER, "")).split(",") if r.strip()
                ],
            }
        )
    return result


def _addresses(msg: EmailMessage, header: str) -> list[str]:
    return [addr for _, addr in getaddresses([str(v) for v in msg.get_all(header, [])]) if addr]


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description="Local SMTP server storing mail into a Maildir.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8025, help="TCP port to listen on")
    parser.add_argument("--maildir", required=True, help="Maildir folder for received mail")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    run_smtp_server(host=args.host, port=args.port, maildir=args.maildir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
