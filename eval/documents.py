"""Reproducible PDF and DOCX files for evaluation sets and test fixtures: fixed creation date, producer and author,
and zip members with fixed timestamps, so writing the same document twice gives the same bytes."""

from __future__ import annotations

import datetime
import io
import zipfile

import docx
import docx.document
from fpdf import FPDF

CREATED = datetime.datetime(2025, 3, 1, 9, 0, 0, tzinfo=datetime.UTC)
FIRM = "Northwind Capital Bank plc"  # the fictional firm of the sample manual and of the planted documents


def new_pdf(title: str) -> FPDF:
    """An A4 FPDF with fixed metadata, so that its bytes are reproducible."""
    pdf = FPDF(format="A4")
    pdf.set_creation_date(CREATED)
    pdf.set_producer("comply test fixtures (fpdf2)")
    pdf.set_title(title)
    pdf.set_author(FIRM)
    pdf.set_margins(22, 22, 22)
    return pdf


def pdf_bytes(pdf: FPDF) -> bytes:
    return bytes(pdf.output())


def deterministic_zip(data: bytes) -> bytes:
    """The zip archive rewritten with fixed member timestamps (python-docx stamps the current time)."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for member in source.infolist():
            info = zipfile.ZipInfo(member.filename, date_time=(2025, 3, 1, 9, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            target.writestr(info, source.read(member.filename))
    return out.getvalue()


def new_docx(title: str) -> docx.document.Document:
    """A DOCX with fixed metadata and the title as its heading, so that its bytes are reproducible."""
    document = docx.Document()
    properties = document.core_properties
    properties.title, properties.author, properties.last_modified_by = title, FIRM, FIRM
    properties.created = properties.modified = CREATED.replace(tzinfo=None)
    properties.revision = 1
    document.add_heading(title, level=1)
    return document


def docx_bytes(document: docx.document.Document) -> bytes:
    out = io.BytesIO()
    document.save(out)
    return deterministic_zip(out.getvalue())
