"""Accepting uploaded files: name and size checks, type by content, blob store, dedupe and replacement.

add_document commits each new document (one upload of a collection at a time); the caller enqueues them after.
"""

from __future__ import annotations

import bz2
import io
import lzma
import re
import tarfile
import time
import unicodedata
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

from sqlmodel import Session, select, update

from app.models import Collection, DocStatus, Document, utcnow
from app.security import human_bytes, uploaded_last_day
from app.settings import settings
from ingest import storage


@dataclass
class Rejected(Exception):
    """A file refused before it became a document (HTTP status + a sentence a person can read)."""

    filename: str
    status_code: int
    detail: str


# Device names Windows reserves whatever the extension (a download saved as "CON.txt" fails there).
_RESERVED = re.compile(r"^(CON|PRN|AUX|NUL|COM[0-9¹²³]|LPT[0-9¹²³])(\..*)?$", re.IGNORECASE)
MAX_NAME_BYTES = 255  # UTF-8 bytes: the common file-system limit
# Bidi embeddings, overrides and isolates, and the BOM: they reorder or hide what a name shows.
# (Other format characters such as the zero-width non-joiner are ordinary in Persian or emoji names.)
_BIDI = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\ufeff")


def _invisible(c: str) -> bool:
    return c in _BIDI or unicodedata.category(c) in ("Cc", "Cs", "Zl", "Zp")


PATH_REFUSED = "a folder path in it must be relative (folder/name), without '.' or '..' parts or backslashes"
MAX_PATH_CHARS = 500  # the documents table's filename column holds 512


def clean_filename(name: str | None) -> str:
    """The name as given (NFC, surrounding spaces trimmed), if it is a file name, or a relative folder path
    whose parts are file names ("hr/2025/policy.pdf", as a folder upload sends it: two "policy.pdf" in
    different folders are different documents). Refused with 400: an absolute path, "." and ".." parts,
    backslashes, empty parts, control and bidi-override characters (a name shown as "invoice.pdf" must be
    that), Windows device names, a trailing dot, a part of more than 255 UTF-8 bytes, more than 500
    characters in all. Names are never used as file system paths (blobs are stored by content hash)."""
    name = unicodedata.normalize("NFC", (name or "").strip())
    # Echoed back in the refusal: invisible characters spelled out, so the reason can be seen.
    shown = "".join(f"\\u{ord(c):04x}" if _invisible(c) else c for c in name)[:200] or "(unnamed)"
    if not name:
        raise Rejected(shown, 400, "Invalid file name: it is empty")
    parts = name.split("/")
    if "\\" in name or any(p.strip() in ("", ".", "..") for p in parts):
        raise Rejected(shown, 400, f"Invalid file name: {PATH_REFUSED}")
    if any(_invisible(c) for c in name):
        raise Rejected(shown, 400, "Invalid file name: it contains control or formatting characters")
    if any(_RESERVED.match(p) or p.endswith(".") for p in parts):
        raise Rejected(shown, 400, "Invalid file name: reserved by the operating system")
    if any(len(p.encode()) > MAX_NAME_BYTES for p in parts):
        raise Rejected(shown, 400, f"Invalid file name: longer than {MAX_NAME_BYTES} bytes")
    if len(name) > MAX_PATH_CHARS:
        raise Rejected(
            shown, 400, f"Invalid file name: its folder path is longer than {MAX_PATH_CHARS} characters"
        )
    return name


MAX_ARCHIVE_MEMBERS = 1000


# Compressed single files and tar archives (`docs.tar.gz`, `notes.md.gz`): (magic, what, decompressor factory)
_COMPRESSED = (
    (b"\x1f\x8b", "gzip", lambda: zlib.decompressobj(16 + zlib.MAX_WBITS)),
    (b"BZh", "bzip2", lambda: bz2.BZ2Decompressor()),
    (b"\xfd7zXZ\x00", "xz", lambda: lzma.LZMADecompressor()),
)
_COMPRESSED_SUFFIX = re.compile(r"\.(gz|gzip|bz2|xz)$", re.IGNORECASE)
_ZLIB = type(zlib.decompressobj())
# what the decompressors raise on damaged input
_UNREADABLE = (zlib.error, OSError, EOFError, lzma.LZMAError, ValueError)


def _is_tar(data: bytes) -> bool:
    return data[257:262] == b"ustar"  # POSIX and GNU tar headers


def unpack(filename: str | None, data: bytes) -> Iterator[tuple[str | None, bytes] | Rejected]:
    """The files one upload stands for: itself; a gzip, bzip2 or xz compressed file, decompressed
    ("notes.md.gz" is "notes.md"); a tar archive, compressed or not ("docs.tar.gz"), as its files
    (``_tar_members``, as a ZIP's); an mbox mailbox as its messages (``_unpack_mbox``); or for a plain ZIP
    archive named ``*.zip`` (not a Word, Excel, PowerPoint, OpenDocument or EPUB file, which are ZIP
    containers too, nor another ZIP-based format such as Pages or Visio) each file in it, named
    "<archive>/<path inside>" ("policies.zip/hr/leave.pdf"). Folders, hidden files and macOS resource forks are skipped; a file too
    large, encrypted or damaged in the archive comes back as a Rejected item, the others go on; an archive
    inside the archive is not unpacked (it is refused as a file). Raises Rejected, before anything is
    yielded, for an archive that cannot be opened, holds more than MAX_ARCHIVE_MEMBERS files or unpacks to
    more than the daily upload quota. One file's bytes are held at a time, except that a compressed tar
    archive is decompressed whole first (at most ``max_upload_request_bytes``) to count its files."""
    from ingest.parsers import ParseError, PlainArchive, detect_type

    compressed = next((c for c in _COMPRESSED if data.startswith(c[0])), None)
    if compressed is not None or _is_tar(data):
        return _unpack_tar_or_compressed(filename, data, compressed)
    if _is_mbox(data):
        return _unpack_mbox(filename, data)
    if not data.startswith(b"PK\x03\x04"):
        return iter([(filename, data)])
    try:
        detect_type(data, filename)
        return iter([(filename, data)])
    except PlainArchive:
        pass
    except ParseError:  # a damaged document: add_document refuses it with the parser's reason
        return iter([(filename, data)])
    if not (filename or "").strip().lower().endswith(".zip"):
        # many formats are ZIP containers (Pages, Keynote, Visio, XPS, JAR, ...): only a .zip is unpacked;
        # add_document refuses the rest as an unsupported ZIP-based file
        return iter([(filename, data)])
    name = clean_filename(filename)
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        infos = [i for i in zf.infolist() if not i.is_dir() and not _skipped(_member_name(i))]
    except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError) as e:
        raise Rejected(name, 422, "The ZIP archive could not be read: it is damaged.") from e
    _check_archive(name, "ZIP", len(infos), sum(i.file_size for i in infos))
    return _members(zf, name, infos)


def _check_archive(name: str, kind: str, files: int, declared: int, what: str = "files") -> None:
    """Refuse a whole archive that holds no files, too many, or more bytes than the daily upload quota."""
    if not files:
        raise Rejected(name, 422, f"The {kind} archive holds no {what}.")
    if files > MAX_ARCHIVE_MEMBERS:
        instead = "split it into smaller files" if what == "messages" else "upload its folder instead"
        raise Rejected(name, 413, f"The {kind} archive holds {files:,} {what}, more than {MAX_ARCHIVE_MEMBERS:,} "
                       f"an upload may unpack; {instead}.")  # fmt: skip
    if declared > settings.upload_quota_bytes_per_day:
        raise Rejected(name, 413, f"The {kind} archive unpacks to {human_bytes(declared)}, more than the daily "
                       f"upload quota ({human_bytes(settings.upload_quota_bytes_per_day)}).")  # fmt: skip


def _members(
    zf: zipfile.ZipFile, name: str, infos: list[zipfile.ZipInfo]
) -> Iterator[tuple[str, bytes] | Rejected]:
    for info in infos:
        member = f"{name}/{_member_name(info)}"
        if info.flag_bits & 0x1:
            yield Rejected(member, 422, "The file is encrypted in the ZIP archive; it cannot be read.")
            continue
        if info.file_size > settings.max_upload_bytes:
            yield Rejected(member, 413, too_large_detail())
            continue
        try:
            with zf.open(info) as f:
                blob = f.read(settings.max_upload_bytes + 1)  # a header may understate the size (a zip bomb)
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError, RuntimeError):
            yield Rejected(member, 422, "The file could not be read from the ZIP archive: it is damaged.")
            continue
        if len(blob) > settings.max_upload_bytes:
            yield Rejected(member, 413, too_large_detail())
            continue
        yield member, blob


def _chunks(dec, data: bytes, step: int) -> Iterator[bytes]:
    """One compressed stream's output, at most ``step`` bytes a piece (zlib's and bz2/lzma's APIs differ)."""
    if isinstance(dec, _ZLIB):
        piece = data
        while True:
            chunk = dec.decompress(piece, step)
            yield chunk
            piece = dec.unconsumed_tail
            if dec.eof or not (piece or chunk):
                return
    else:
        yield dec.decompress(data, step)
        while not dec.eof and not dec.needs_input:
            yield dec.decompress(b"", step)


def _decompress(name: str, data: bytes, compressed: tuple, limit: int, too_big: str) -> bytes:
    """``data`` decompressed (every stream of a multi-stream file), refused past ``limit`` bytes (413,
    ``too_big``): a bomb is stopped there, not held in memory. Raises Rejected 422 for a damaged or cut-short
    file."""
    magic, what, new = compressed
    out, total, rest = [], 0, data
    try:
        while rest.startswith(magic):
            dec = new()
            for chunk in _chunks(dec, rest, 1 << 20):
                total += len(chunk)
                if total > limit:
                    raise Rejected(name, 413, too_big)
                out.append(chunk)
            if not dec.eof:
                raise Rejected(name, 422, f"The {what} file could not be read: it is cut short.")
            rest = dec.unused_data  # another stream (cat a.gz b.gz), or padding, which is ignored
    except _UNREADABLE as e:
        raise Rejected(name, 422, f"The {what} file could not be read: it is damaged.") from e
    return b"".join(out)


def _unpack_tar_or_compressed(
    filename: str | None, data: bytes, compressed: tuple | None
) -> Iterator[tuple[str | None, bytes] | Rejected]:
    """A compressed file as the file inside it (its name without the compression's suffix), a tar archive
    (compressed or not) as its files. Decompression stops at the upload size limit for a single file, and for
    a tar at the request size limit (or the daily quota where that is smaller): what it unpacks to is held."""
    name = clean_filename(filename)
    raw = data
    if compressed is not None:
        head = _peek(compressed, data)
        if head and not _is_tar(head):  # one file: no more than an upload of it may hold
            limit, too_big = settings.max_upload_bytes, too_large_detail()
        else:
            limit = max(settings.max_upload_bytes, min(settings.upload_quota_bytes_per_day,
                                                       settings.max_upload_request_bytes))  # fmt: skip
            too_big = (f"The {compressed[1]} file unpacks to more than {human_bytes(limit)}, more than one upload "
                       "may hold; upload its files instead.")  # fmt: skip
        raw = _decompress(name, data, compressed, limit, too_big)
    if not _is_tar(raw):
        if len(raw) > settings.max_upload_bytes:
            raise Rejected(name, 413, too_large_detail())
        return iter([(_COMPRESSED_SUFFIX.sub("", name) or name, raw)])
    try:
        tf = tarfile.open(fileobj=io.BytesIO(raw), mode="r:")
        infos = [i for i in tf.getmembers() if i.isfile() and not _skipped(_tar_name(i))]
    except (tarfile.TarError, OSError, ValueError, EOFError) as e:
        raise Rejected(name, 422, "The tar archive could not be read: it is damaged.") from e
    _check_archive(name, "tar", len(infos), sum(i.size for i in infos))
    return _tar_members(tf, name, infos)


def _peek(compressed: tuple, data: bytes) -> bytes:
    """The first bytes (up to 512) a compressed file unpacks to, to tell a tar archive from a single file;
    b"" where its first MB does not say (a bzip2 block is up to 900 KB) or cannot be read."""
    try:
        return compressed[2]().decompress(data[: 1 << 20], 512)
    except _UNREADABLE:
        return b""


# mbox (Thunderbird, Apple Mail, Google Takeout's Gmail export): messages one after another, each after a
# "From <sender> <date>" line; a body line that would read as one is written ">From " (one ">" more each time)
_MBOX_FROM = re.compile(rb"(?:\A|\n)From [^\n]*\n")
_MBOX_QUOTED = re.compile(rb"(?m)^>(>*From )")


def _is_mbox(data: bytes) -> bool:
    """A "From " separator line, then a message's header fields (a text that merely starts "From " is not)."""
    from ingest.parsers.mail import looks_like_email

    if not data.startswith(b"From "):
        return False
    first, _, rest = data[:65536].partition(b"\n")
    return len(first.split()) >= 3 and looks_like_email(rest.decode("latin-1"))


def _unpack_mbox(filename: str | None, data: bytes) -> Iterator[tuple[str | None, bytes] | Rejected]:
    """An mbox as its messages, each an e-mail document "<mailbox>/<n> <subject>.eml" (n from 0001 in mailbox
    order, the subject made a file name); a mailbox of one message is that message under the upload's name."""
    name = clean_filename(filename)
    messages = [_MBOX_QUOTED.sub(rb"\1", m) for m in _MBOX_FROM.split(data) if m.strip()]
    if len(messages) == 1:
        return iter([(name, messages[0])])
    _check_archive(name, "mbox", len(messages), len(data), "messages")
    return _mbox_members(name, messages)


def _mbox_members(name: str, messages: list[bytes]) -> Iterator[tuple[str, bytes] | Rejected]:
    import email.parser
    import email.policy

    width = max(4, len(str(len(messages))))
    for i, raw in enumerate(messages, 1):
        try:
            subject = str(
                email.parser.BytesHeaderParser(policy=email.policy.default).parsebytes(raw)["subject"] or ""
            )
        except Exception:  # noqa: BLE001 - a malformed header only costs the name its subject
            subject = ""
        subject = " ".join("".join(" " if ch in "/\\" or _invisible(ch) else ch for ch in subject).split())
        subject = subject[:80].strip().rstrip(".")
        member = f"{name}/{i:0{width}d}{' ' + subject if subject else ''}.eml"
        if len(raw) > settings.max_upload_bytes:
            yield Rejected(member, 413, too_large_detail())
            continue
        yield member, raw


def _tar_name(info: tarfile.TarInfo) -> str:
    """A member's path without "." parts (``tar -czf docs.tgz .`` stores "./hr/leave.pdf"); ".." stays, to be
    refused by ``clean_filename``."""
    return "/".join(p for p in info.name.split("/") if p not in ("", "."))


def _tar_members(
    tf: tarfile.TarFile, name: str, infos: list[tarfile.TarInfo]
) -> Iterator[tuple[str, bytes] | Rejected]:
    for info in infos:
        member = f"{name}/{_tar_name(info)}"
        if info.size > settings.max_upload_bytes:
            yield Rejected(member, 413, too_large_detail())
            continue
        yield member, tf.extractfile(info).read()  # a regular file (``isfile``): never None


def _member_name(info: zipfile.ZipInfo) -> str:
    """A member's path; names stored without the UTF-8 flag (old Windows and macOS tools) are tried as UTF-8
    before the format's default code page 437."""
    name = info.filename
    if not info.flag_bits & 0x800:
        try:
            name = name.encode("cp437").decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            pass
    return name.strip("/")


def _skipped(path: str) -> bool:
    parts = path.split("/")
    return any(p.startswith(".") and p not in (".", "..") for p in parts) or parts[0] == "__MACOSX"


def too_large_detail() -> str:
    return f"File too large: the upload limit is {human_bytes(settings.max_upload_bytes)}"


def quota_detail(used: int) -> str:
    return (
        f"Upload quota exceeded: {human_bytes(used)} of {human_bytes(settings.upload_quota_bytes_per_day)} used "
        "in the last 24 hours"
    )


def too_many_files_detail() -> str:
    return f"Too many files in one upload: the limit is {settings.upload_max_files}"


def add_document(
    session: Session, collection_id: int, filename: str | None, data: bytes, user_id: int | None
) -> tuple[Document, bool]:
    """Store the file and return (document, needs_processing). Same content in the collection is stored once;
    a different content under an existing name becomes a new document that replaces the old one once ready."""
    from ingest.parsers import ParseError, UnsupportedFileType, detect_type

    name = clean_filename(filename)
    if len(data) > settings.max_upload_bytes:
        raise Rejected(name, 413, too_large_detail())
    if not data:
        raise Rejected(name, 422, "The file is empty.")
    try:
        detected = detect_type(data, name)
    except UnsupportedFileType as e:
        raise Rejected(name, 415, f"Unsupported file type: {e.reason}") from e
    except ParseError as e:
        raise Rejected(name, 422, e.reason) from e

    sha = storage.sha256_hex(data)
    # NOTE: the check for the same content and the new row are one step per collection, committed at once: the
    # admin page sends three files at a time, and two requests with the same file both found no copy and both
    # added one. The collection's row is locked until the commit (PostgreSQL; on SQLite this takes the write
    # lock), so the database orders them, with Redis down too and across API replicas.
    session.exec(update(Collection).where(Collection.id == collection_id).values(id=Collection.id))
    try:
        found = _add_row(session, collection_id, name, data, sha, detected, user_id)
    except BaseException:
        session.rollback()  # a refusal (the quota) must not keep the collection locked
        raise
    session.commit()
    return found


def _add_row(
    session: Session, collection_id: int, name: str, data: bytes, sha: str, detected: str, user_id: int | None
) -> tuple[Document, bool]:
    """add_document's part while the collection is locked: the same content's document, or a new one."""
    same = session.exec(
        select(Document)
        .where(Document.collection_id == collection_id, Document.sha256 == sha)
        .order_by(Document.id.desc())
    ).first()
    _pause_after_check()
    if same is not None and same.status != DocStatus.deleting:
        if same.status not in (DocStatus.failed, DocStatus.cancelled):
            return same, False
        # Same bytes failed (or were cancelled) before: try again (the failure may have been transient).
        storage.put_blob(data)
        same.status, same.stage, same.error, same.attempts = DocStatus.queued, "queued", None, 0
        same.retryable = None
        same.progress, same.updated_at = 0.0, utcnow()
        session.add(same)
        return same, True

    if user_id is not None:
        used = uploaded_last_day(session, user_id)
        if used + len(data) > settings.upload_quota_bytes_per_day:
            raise Rejected(name, 429, quota_detail(used))
    storage.put_blob(data)
    previous = session.exec(
        select(Document)
        .where(
            Document.collection_id == collection_id,
            Document.filename == name,
            Document.status != DocStatus.deleting,
        )
        .order_by(Document.id.desc())
    ).first()
    doc = Document(
        collection_id=collection_id,
        filename=name,
        sha256=sha,
        size_bytes=len(data),
        detected_type=detected,
        uploaded_by=user_id,
        replaces_id=previous.id if previous is not None else None,
    )
    session.add(doc)
    session.flush()
    return doc, True


def _pause_after_check() -> None:
    """Test hook (app.testhooks): waits at `upload_checked` when AUTOGLM_TEST_PAUSE_AT names it."""
    from app.testhooks import pause_seconds

    if seconds := pause_seconds("upload_checked"):
        time.sleep(seconds)
