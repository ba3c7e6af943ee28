"""E-mail messages (.eml, RFC 5322 / MIME): the subject is the title; a header block (From, To, Cc, Date,
Subject) leads the text, so that "who wrote about ..." finds it; then the body (the plain-text part, else
the HTML part read as HTML) and the names of the attachments. An attached message (a forward) follows with
its own header block; then each attached document (PDF, Word, ...: whatever ``parse`` reads) under an
"Attachment: <name>" heading."""

from __future__ import annotations

import email
import email.policy
import re
from dataclasses import dataclass, field
from email.message import EmailMessage

from .base import ParsedDocument, ParseError, PlainArchive, TextBuilder, UnsupportedFileType, clean_inline
from .text import decode_text
from .web import parse_html

_HEADERS = ("From", "To", "Cc", "Date", "Subject")
# the first lines of a message: header fields, of which a message has From and one of these
_FIELD = re.compile(r"^([A-Za-z][A-Za-z0-9-]*):[ \t]", re.M)
_ALSO = {"subject", "date", "message-id", "mime-version", "received", "to"}
MAX_PARTS = 1000


def _header_names(text: str) -> dict[str, str]:
    """The header fields up to the first blank line (name -> first line of the value), or {} when those lines
    are not all header fields."""
    head = text.lstrip("\ufeff")[:16384].replace("\r\n", "\n").split("\n\n", 1)[0]
    lines = [ln for ln in head.split("\n") if ln and not ln[0].isspace()]  # folded lines continue a field
    if len(lines) < 2 or not all(_FIELD.match(ln) for ln in lines):
        return {}
    return {_FIELD.match(ln).group(1).lower(): ln.split(":", 1)[1].strip() for ln in lines}


def looks_like_email(text: str) -> bool:
    """Header fields up to the first blank line, among them From and Subject/Date/Message-ID/..."""
    names = _header_names(text)
    return "from" in names and bool(set(names) & _ALSO)


def looks_like_mhtml(text: str) -> bool:
    """A web page saved as one file (.mht / .mhtml: browsers, Word's "Single File Web Page"): a MIME
    multipart/related document that is not a message (no To, no Message-ID)."""
    names = _header_names(text)
    return (
        "multipart/related" in names.get("content-type", "").lower()
        and "mime-version" in names
        and not {"to", "message-id", "received"} & set(names)
    )


def parse_mhtml(data: bytes) -> ParsedDocument:
    """The page's HTML part (the root: the first text/html part) read as HTML; images and styles are parts
    too and are skipped. The title is the page's <title>, else the Subject field."""
    try:
        msg = email.message_from_bytes(data, policy=email.policy.default)
    except Exception as e:  # noqa: BLE001  (the email package raises many kinds on broken input)
        raise ParseError("The web archive could not be read: it is damaged.") from e
    page = next((p for p in msg.walk() if p.get_content_type() == "text/html"), None)
    if page is None:
        raise ParseError("The web archive holds no HTML page.")
    raw = page.get_payload(decode=True) or b""
    charset = page.get_content_charset()
    if charset and b"charset" not in raw[:4096].lower():
        try:  # the part's declared charset, where the page itself declares none
            raw = raw.decode(charset).encode("utf-8")
        except (LookupError, UnicodeDecodeError):
            pass
    doc = parse_html(raw)
    doc.detected_type = "mhtml"
    doc.title = doc.title or clean_inline(str(msg.get("Subject") or "")) or None
    return doc


@dataclass
class Mail:
    """A message as it is written out: its header fields, body text, every attachment's name, the attached
    documents (name, bytes) and attached messages. Outlook .msg files (``ole``) fill the same."""

    headers: list[tuple[str, str]]
    body: str = ""
    names: list[str] = field(default_factory=list)
    files: list[tuple[str, bytes]] = field(default_factory=list)
    forwarded: list[Mail] = field(default_factory=list)


def parse_email(data: bytes) -> ParsedDocument:
    try:
        msg = email.message_from_bytes(data, policy=email.policy.default)
    except Exception as e:  # noqa: BLE001  (the email package raises many kinds on broken input)
        raise ParseError("The e-mail message could not be read: it is damaged.") from e
    b = TextBuilder()
    write_mail(b, _mail(msg, depth=0))
    subject = clean_inline(str(msg.get("Subject") or ""))
    return b.build("email", None, subject or None)


def write_mail(b: TextBuilder, mail: Mail) -> None:
    """The header block, body, attachment names, attached messages, then each attached document's text under
    an "Attachment: <name>" heading."""
    b.block("\n".join(f"{h}: {clean_inline(v)}" for h, v in mail.headers if clean_inline(v)))
    b.block(mail.body)
    if mail.names:
        b.block("Attachments: " + ", ".join(mail.names))
    for inner in mail.forwarded:
        b.block("Attached message:")
        write_mail(b, inner)
    for name, data in mail.files:
        text, notices = attachment_text(name, data)
        if text:
            b.heading(1, f"Attachment: {name}")
            b.block(text)
        for notice in notices:
            b.notice(notice)


def _mail(msg: EmailMessage, depth: int) -> Mail:
    if len(list(msg.walk())) > MAX_PARTS:
        raise ParseError(f"The e-mail message has more than {MAX_PARTS} parts; it was not read.")
    mail = Mail([(h, str(msg.get(h))) for h in _HEADERS if msg.get(h)])
    body = msg.get_body(preferencelist=("plain", "html"))
    if body is not None:
        content = _content(body)
        mail.body = html_text(content.encode("utf-8")) if body.get_content_subtype() == "html" else content
    for part in msg.iter_attachments():
        if part.get_content_type() == "message/rfc822" and depth < 3:
            inner = part.get_content()
            if isinstance(inner, EmailMessage):
                mail.forwarded.append(_mail(inner, depth + 1))
                continue
        name = clean_inline(part.get_filename() or part.get_content_type())
        mail.names.append(name)
        mail.files.append((name, part.get_payload(decode=True) or b""))
    return mail


def html_text(data: bytes) -> str:
    """An HTML body's text ("" when it has none)."""
    try:
        return parse_html(data).text
    except ParseError:
        return ""


def attachment_text(name: str, data: bytes) -> tuple[str, list[str]]:
    """An attached document's text, read by its own parser (PDF, Word, ...), and its notices; "" for what is not
    a document (images, archives, damaged files) and for attached e-mails (their own attachments are not
    followed). A document that could not be read (damaged, password-protected) and a ZIP archive, whose files
    are not unpacked here, say so in a notice; an image or another kind of file is only named."""
    from . import detect_type, parse

    try:
        if not data or detect_type(data, name) in ("email", "msg"):
            return "", []
        doc = parse(data, name)
        return doc.text, [f"Attachment '{name}': {n}" for n in doc.notices]
    except PlainArchive:
        return "", [f"Attachment '{name}' is a ZIP archive; the files in it were not read."]
    except UnsupportedFileType:
        return "", []
    except ParseError as e:  # its reason says what is wrong ("The PDF could not be read: ...")
        return "", [f"Attachment '{name}': {e.reason}"]


def _content(part) -> str:
    try:
        return part.get_content()
    except (LookupError, UnicodeError, ValueError):  # an unknown or wrong declared charset
        raw = part.get_payload(decode=True) or b""
        try:
            return decode_text(raw) if raw.strip() else ""
        except ParseError:  # binary data in a text part
            return ""
