"""`send_email`: hands one message to the local SMTP relay (no auth, no TLS).

Every message carries a Message-ID derived from the idempotency key and the key itself in
`X-Agentlog-Idempotency-Key`, so a retried call produces the same message and the receiving
side (see `mailbox`) can drop the duplicate.
"""

from __future__ import annotations

import hashlib
import re
import smtplib
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import formataddr, formatdate, getaddresses
from typing import Any

from processors.tools.backends.config import BackendConfig
from processors.tools.backends.errors import ToolError

__all__ = [
    "IDEMPOTENCY_HEADER",
    "SMTP_TIMEOUT_S",
    "build_message",
    "message_id_for",
    "parse_addresses",
    "send_email",
]

IDEMPOTENCY_HEADER = "X-Agentlog-Idempotency-Key"
SMTP_TIMEOUT_S = 10.0
# Deliberately simple: one '@', no spaces or list/quote punctuation, non-empty on both sides.
_ADDR_SPEC = re.compile(r"^[^@\s<>,;\"()\[\]]+@[^@\s<>,;\"()\[\]]+$")


def message_id_for(idempotency_key: str) -> str:
    """The Message-ID every attempt of the call with this key uses."""
    digest = hashlib.sha256(idempotency_key.encode("utf-8")).hexdigest()[:32]
    return f"<{digest}@agentlog.local>"


def parse_addresses(value: str | Sequence[str] | None, *, field: str) -> list[tuple[str, str]]:
    """(display name, address) pairs of a string ("A <a@x>, b@y") or a list of such strings.

    field: name of the input field, for error messages.
    """
    if value is None:
        return []
    raw = [value] if isinstance(value, str) else list(value)
    for item in raw:
        if not isinstance(item, str):
            raise ToolError(f"send_email: '{field}' must hold strings, got {type(item).__name__}")
        # A line break would let the text smuggle extra headers or recipients.
        if "\r" in item or "\n" in item:
            raise ToolError(f"send_email: '{field}' must not contain line breaks")
    pairs = [(name, addr) for name, addr in getaddresses(raw) if name or addr]
    for name, addr in pairs:
        if not _ADDR_SPEC.match(addr):
            shown = f"{name} <{addr}>" if name else addr
            raise ToolError(f"send_email: '{field}' holds an invalid address: {shown!r}")
    return pairs


def build_message(
    input: dict[str, Any], cfg: BackendConfig, *, idempotency_key: str
) -> tuple[EmailMessage, list[str]]:
    """The message and its envelope recipients (to + cc + bcc, first spelling of each kept).

    idempotency_key: identifies the logical call; it fixes the Message-ID.
    """
    to = parse_addresses(input.get("to"), field="to")
    cc = parse_addresses(input.get("cc"), field="cc")
    bcc = parse_addresses(input.get("bcc"), field="bcc")
    if not to:
        raise ToolError("send_email: 'to' must name at least one recipient")
    subject = input.get("subject")
    body = input.get("body")
    if not isinstance(subject, str) or not subject.strip():
        raise ToolError("send_email: 'subject' must be a non-empty string")
    if not isinstance(body, str):
        raise ToolError("send_email: 'body' must be a string")
    msg = EmailMessage()
    try:
        msg["From"] = cfg.mail_from
        msg["To"] = ", ".join(formataddr(p) for p in to)
        if cc:
            msg["Cc"] = ", ".join(formataddr(p) for p in cc)
        # No Bcc header, ever: bcc recipients exist only in the SMTP envelope.
        msg["Subject"] = subject
        msg["Date"] = formatdate(usegmt=True)
        msg["Message-ID"] = message_id_for(idempotency_key)
        msg[IDEMPOTENCY_HEADER] = idempotency_key
        msg.set_content(body)
    except ValueError as exc:
        # The email package refuses header values with line breaks and similar mistakes.
        raise ToolError(f"send_email: cannot build the message: {exc}") from None
    recipients: list[str] = []
    seen: set[str] = set()
    for _, addr in to + cc + bcc:
        # Addresses are compared case-insensitively: one mailbox must get one copy.
        if addr.lower() not in seen:
            seen.add(addr.lower())
            recipients.append(addr)
    return msg, recipients


def send_email(
    input: dict[str, Any], cfg: BackendConfig, *, idempotency_key: str
) -> dict[str, Any]:
    """Send the message to to+cc+bcc through the relay; `accepted` counts recipients it took.

    idempotency_key: identifies the logical call; retries must pass the same key.
    """
    if not isinstance(idempotency_key, str) or not idempotency_key:
        raise ToolError("send_email: an idempotency key is required")
    msg, recipients = build_message(input, cfg, idempotency_key=idempotency_key)
    relay = f"{cfg.smtp_host}:{cfg.smtp_port}"
    try:
        with smtplib.SMTP(cfg.smtp_host, cfg.smtp_port, timeout=SMTP_TIMEOUT_S) as smtp:
            refused = smtp.send_message(msg, from_addr=cfg.mail_from, to_addrs=recipients)
    except smtplib.SMTPRecipientsRefused as exc:
        raise ToolError(
            f"send_email: the relay at {relay} refused every recipient: {exc.recipients}"
        ) from None
    except smtplib.SMTPException as exc:
        raise ToolError(f"send_email: the relay at {relay} rejected the message: {exc}") from None
    except OSError as exc:
        raise ToolError(f"send_email: cannot reach the SMTP relay at {relay}: {exc}") from None
    return {
        "message_id": msg["Message-ID"],
        "recipients": recipients,
        "accepted": len(recipients) - len(refused),
        "refused": sorted(refused),
    }
