"""PDF with pypdf: one section per page (1-based page numbers kept), title from the metadata."""

from __future__ import annotations

import io
import logging

from pypdf import PdfReader
from pypdf.errors import DependencyError, FileNotDecryptedError

from .base import MAX_PDF_PAGES, ParsedDocument, ParseError, TextBuilder

logger = logging.getLogger(__name__)

_ENCRYPTED = "The PDF is encrypted with a password; remove the password and upload it again."
_DAMAGED = "The PDF could not be read: the file is damaged or is not a valid PDF."


def parse_pdf(data: bytes) -> ParsedDocument:
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            # Many PDFs are "encrypted" with an empty user password (only editing is restricted).
            try:
                if not reader.decrypt(""):
                    raise ParseError(_ENCRYPTED)
            except (FileNotDecryptedError, NotImplementedError, DependencyError) as e:
                raise ParseError(_ENCRYPTED) from e
        n_pages = len(reader.pages)
    except ParseError:
        raise
    except Exception as e:  # pypdf raises many types on hostile input; all mean "damaged"
        raise ParseError(_DAMAGED) from e
    if n_pages == 0:
        raise ParseError("The PDF has no pages.")
    if n_pages > MAX_PDF_PAGES:
        raise ParseError(f"The PDF has {n_pages:,} pages; at most {MAX_PDF_PAGES:,} are supported.")

    b = TextBuilder()
    failed = 0
    for i in range(n_pages):
        try:
            page_text = reader.pages[i].extract_text() or ""
        except FileNotDecryptedError as e:
            raise ParseError(_ENCRYPTED) from e
        except Exception as e:  # one bad page must not lose the others
            logger.warning("PDF page %d could not be read: %s", i + 1, e)
            failed += 1
            continue
        b.page(i + 1)
        b.block(page_text)
    if failed == n_pages:
        raise ParseError(_DAMAGED)
    title = None
    try:
        meta = reader.metadata
        title = meta.title if meta else None
    except Exception:  # metadata is optional; a broken info dictionary is not worth failing for
        title = None
    try:
        return b.build("pdf", n_pages, title)
    except ParseError as e:
        raise ParseError(
            "No text could be extracted from the PDF: it seems to contain only images (scanned pages?); "
            "text recognition (OCR) is not supported."
        ) from e
