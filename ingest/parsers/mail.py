"""E-mail messages (.eml, RFC 5322 / MIME): the subject is the title; a header block (From, To, Cc, Date,
Subject) leads the text, so that "who wrote about ..." finds it; then the body (the plain-text part, else
the HTML part read as HTML) and the names of the attachments. An attached message (a forward) follows with
its own header block; then each attached document (PDF, Word, ...: whatever ``parse`` reads) under an
"Attachment: <name>" heading."""

from __future__ import annotations

import email
import email.policy
import re
from email.message import EmailMessage

from .base import ParsedDocument, ParseError, TextBuilder, clean_inline
from .text import decode_text
from .web import parse_html

_HEADERS = ("From", "To", "Cc", "Date", "Subject")
# the first lines of a message: header fields, of which a message has From and one of these
_FIELD = re.compile(r"^([A-Za-z][A-Za-z0-9-]*):[ \t]", re.M)
_ALSO = {"subject", "date", "message-id", "mime-version", "received", "to"}
MAX_PARTS = 1000


def looks_like_email(text: str) -> bool:
    """Header fields up to the first blank line, among them From and Subject/Date/Message-ID/..."""
    head = text.lstrip("\ufeff")[:16384].replace("\r\n", "\n").split("\n\n", 1)[0]
    lines = [ln for ln in head.split("\n") if ln and not ln[0].isspace()]  # folded lines continue a field
    if len(lines) < 2 or not all(_FIELD.match(ln) for ln in lines):
        return False
    names = {_FIELD.match(ln).group(1).lower() for ln in lines}
    return "from" in names and bool(names & _ALSO)


def parse_email(data: bytes) -> ParsedDocument:
    try:
        msg = email.message_from_bytes(data, policy=email.policy.default)
    except Exception as e:  # noqa: BLE001  (the email package raises many kinds on broken input)
        raise ParseError("The e-mail message could not be read: it is damaged.") from e
    b = TextBuilder()
    _message(msg, b, depth=0)
    subject = clean_inline(str(msg.get("Subject") or ""))
    return b.build("email", None, subject or None)


def _message(msg: EmailMessage, b: TextBuilder, depth: int) -> None:
    header = [f"{h}: {clean_inline(str(msg.get(h)))}" for h in _HEADERS if msg.get(h)]
    b.block("\n".join(header))
    if len(list(msg.walk())) > MAX_PARTS:
        raise ParseError(f"The e-mail message has more than {MAX_PARTS} parts; it was not read.")
    body = msg.get_body(preferencelist=("plain", "html"))
    if body is not None:
        content = _content(body)
        if body.get_content_subtype() == "html":
            try:
                content = parse_html(content.encode("utf-8")).text
            except ParseError:
                content = ""
        b.block(content)
    names, forwarded, files = [], [], []
    for part in msg.iter_attachments():
        if part.get_content_type() == "message/rfc822" and depth < 3:
            inner = part.get_content()
            if isinstance(inner, EmailMessage):
                forwarded.append(inner)
                continue
        name = clean_inline(part.get_filename() or part.get_content_type())
        names.append(name)
        files.append((name, part))
    if names:
        b.block("Attachments: " + ", ".join(names))
    for inner in forwarded:
        b.block("Attached message:")
        _message(inner, b, depth + 1)
    for name, part in files:
        text = _attachment_text(name, part)
        if text:
            b.heading(1, f"Attachment: {name}")
            b.block(text)


def _attachment_text(name: str, part) -> str:
    """An attached document's text, read by its own parser (PDF, Word, ...); "" for what is not a document
    (images, archives, damaged files) and for attached e-mails (their own attachments are not followed)."""
    from . import detect_type, parse

    try:
        data = part.get_payload(decode=True) or b""
        if not data or detect_type(data, name) == "email":
            return ""
        return parse(data, name).text
    except ParseError:  # UnsupportedFileType included
        return ""


def _content(part) -> str:
    try:
        return part.get_content()
    except (LookupError, UnicodeError, ValueError):  # an unknown or wrong declared charset
        raw = part.get_payload(decode=True) or b""
        try:
            return decode_text(raw) if raw.strip() else ""
        except ParseError:  # binary data in a text part
            return ""
