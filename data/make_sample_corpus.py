"""Render the sample compliance manual to data/corpus/ and its gold questions to data/gold/sample_gold.jsonl.

Run with `make sample-corpus`. The output is deterministic: rerunning rewrites the same bytes. Gold pages are not
typed by hand: each gold quote is located in the rendered PDFs with pypdfium2 and must occur on exactly one page,
so gold pages are physical 1-based pages, not printed page labels (the AML policy's body starts at printed page 1
on physical page 3).
"""

from __future__ import annotations

import datetime
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pypdfium2
from fpdf import FPDF
from fpdf.enums import XPos, YPos
from fpdf.fonts import FontFace
from sample_policies import (
    AML_KYC,
    COMPLAINTS,
    FIRM,
    GIFTS,
    INFOSEC,
    OUTSOURCING,
    PDF_POLICIES,
    RETENTION_V1,
    RETENTION_V2,
    WHISTLEBLOWING,
    Clause,
    Policy,
    Section,
    long_date,
)

DATA = Path(__file__).resolve().parent
CORPUS = DATA / "corpus"
GOLD_FILE = DATA / "gold" / "sample_gold.jsonl"

# Fixed metadata so that the PDFs are byte-for-byte reproducible (fpdf2 derives the file /ID from the content).
CREATED = datetime.datetime(2025, 3, 1, 9, 0, 0, tzinfo=datetime.UTC)
PRODUCER = "comply sample corpus (fpdf2)"

FONT = "Helvetica"
BODY_SIZE = 10.5
LINE = 5.4
NAVY = (22, 45, 84)
GREY = (105, 105, 105)
FRONT_LABELS = ("i", "ii")


# --------------------------------------------------------------------------------------------------------------
# Rendering


@dataclass
class Layout:
    """What a first rendering pass measured: the printed page of each section and the number of body pages."""

    section_pages: dict[str, str] = field(default_factory=dict)
    body_pages: int = 0


class ManualPDF(FPDF):
    """One policy of the manual: running header and footer, title block or cover and contents, numbered clauses."""

    def __init__(self, policy: Policy, layout: Layout):
        super().__init__(format="A4", unit="mm")
        self.policy = policy
        self.layout = layout
        self.measured = Layout()
        self.front_pages = len(FRONT_LABELS) if policy.front_matter else 0
        self.set_margins(22, 24, 22)
        self.set_auto_page_break(True, margin=22)
        self.set_creation_date(CREATED)
        self.set_producer(PRODUCER)
        self.set_creator(PRODUCER)
        self.set_title(policy.title)
        self.set_author(FIRM)
        self.set_subject(f"{policy.reference} version {policy.version}")
        self.set_lang("en-GB")

    def printed_label(self, page: int) -> str:
        """The page number printed on physical page `page`, as the /PageLabels of the file also say."""
        return FRONT_LABELS[page - 1] if page <= self.front_pages else str(page - self.front_pages)

    def header(self) -> None:
        if self.front_pages and self.page_no() == 1:
            return  # the cover carries the title itself
        self.set_font(FONT, "", 8.5)
        self.set_text_color(*GREY)
        self.cell(0, 5, f"{FIRM}  |  {self.policy.title}")
        self.set_x(self.l_margin)
        self.cell(0, 5, f"{self.policy.reference}  Version {self.policy.version}", align="R")
        self.ln(6)
        self.set_draw_color(*NAVY)
        self.set_line_width(0.3)
        self.line(self.l_margin, self.get_y(), self.w - self.r_margin, self.get_y())
        self.ln(5)
        self.set_text_color(0, 0, 0)

    def footer(self) -> None:
        self.set_y(-16)
        self.set_draw_color(*GREY)
        self.set_line_width(0.2)
        self.line(self.l_margin, self.get_y(), self.w - self.r_margin, self.get_y())
        self.ln(1.5)
        self.set_font(FONT, "", 8.5)
        self.set_text_color(*GREY)
        self.cell(0, 5, f"Internal - uncontrolled when printed. Effective {long_date(self.policy.effective)}.")
        self.set_x(self.l_margin)
        page = self.page_no()
        if page <= self.front_pages:
            number = f"Page {self.printed_label(page)}"
        else:
            number = f"Page {self.printed_label(page)} of {self.layout.body_pages}"
        self.cell(0, 5, number, align="R")
        self.set_text_color(0, 0, 0)

    # -- building blocks --------------------------------------------------------------------------------------

    def control_table(self) -> None:
        p = self.policy
        rows = (
            ("Document reference", p.reference, "Version", p.version),
            ("Effective date", long_date(p.effective), "Next review", p.next_review),
            ("Policy owner", p.owner, "Approved by", p.approver),
        )
        self.set_font(FONT, "", 9)
        self.set_draw_color(*GREY)
        self.set_line_width(0.2)
        with self.table(
            col_widths=(30, 55, 24, 57), first_row_as_headings=False, line_height=5, padding=1.5
        ) as table:
            for row in rows:
                cells = table.row()
                for i, text in enumerate(row):
                    cells.cell(text, style=FontFace(emphasis="BOLD") if i % 2 == 0 else None)
        self.ln(4)

    def statement(self) -> None:
        self.set_font(FONT, "B", 10.5)
        self.set_text_color(*NAVY)
        self.cell(0, 6, "Policy statement", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.set_text_color(0, 0, 0)
        self.set_font(FONT, "I", BODY_SIZE)
        self.multi_cell(0, LINE, self.policy.statement, align="J", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.ln(3)

    def title_block(self) -> None:
        self.set_font(FONT, "", 10)
        self.set_text_color(*GREY)
        self.cell(0, 5, FIRM, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.set_font(FONT, "B", 20)
        self.set_text_color(*NAVY)
        self.multi_cell(0, 9, self.policy.title, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.set_text_color(0, 0, 0)
        self.ln(3)
        self.control_table()
        self.statement()

    def section_heading(self, section: Section) -> None:
        if self.get_y() > self.page_break_trigger - 28:
            self.add_page()  # keep a heading with the first lines of its section
        self.ln(2.5)
        self.measured.section_pages[section.title] = self.printed_label(self.page_no())
        self.set_font(FONT, "B", 12.5)
        self.set_text_color(*NAVY)
        self.cell(0, 7, section.title, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.set_draw_color(*NAVY)
        self.set_line_width(0.2)
        self.line(self.l_margin, self.get_y(), self.l_margin + self.get_string_width(section.title), self.get_y())
        self.set_text_color(0, 0, 0)
        self.ln(2.5)

    def clause(self, clause: Clause) -> None:
        if self.get_y() + 2 * LINE > self.page_break_trigger:
            self.add_page()  # never leave a clause number alone at the foot of a page
        indent = 8 if "(" in clause.id else 0
        self.set_x(self.l_margin + indent)
        self.set_font(FONT, "B", BODY_SIZE)
        self.cell(19, LINE, clause.id)
        self.set_font(FONT, "B" if clause.heading else "", BODY_SIZE)
        self.multi_cell(0, LINE, clause.text, align="L" if clause.heading else "J",
                        new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.ln(1.6)

    def schedule_table(self, rows: tuple[tuple[str, ...], ...]) -> None:
        self.set_draw_color(*GREY)
        self.set_line_width(0.2)
        self.set_font(FONT, "", 9.5)
        with self.table(col_widths=(50, 35, 55, 20), line_height=5.5, padding=1.5,
                        headings_style=_heading_style()) as table:
            for row in rows:
                cells = table.row()
                for text in row:
                    cells.cell(text)
        self.ln(3)

    # -- front matter (cover and contents) ---------------------------------------------------------------------

    def cover(self) -> None:
        front = self.policy.front_matter
        self.set_y(40)
        self.set_font(FONT, "", 11)
        self.set_text_color(*GREY)
        self.cell(0, 6, front.series, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.set_font(FONT, "B", 14)
        self.set_text_color(*NAVY)
        self.cell(0, 8, FIRM, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.ln(6)
        self.set_font(FONT, "B", 24)
        self.multi_cell(0, 11, self.policy.title, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.set_text_color(0, 0, 0)
        self.ln(8)
        self.control_table()
        self.statement()
        self.set_font(FONT, "B", 10.5)
        self.set_text_color(*NAVY)
        self.cell(0, 6, "Version history", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.set_text_color(0, 0, 0)
        self.set_font(FONT, "", 9.5)
        with self.table(col_widths=(18, 32, 116), line_height=5.5, padding=1.5,
                        headings_style=_heading_style()) as table:
            table.row(("Version", "Date", "Summary of changes"))
            for row in front.history:
                table.row(row)
        self.ln(5)
        self.set_font(FONT, "", BODY_SIZE)
        self.multi_cell(
            0, LINE,
            f"This policy was approved by the {self.policy.approver.split(',')[0]} and takes effect on "
            f"{long_date(self.policy.effective)}. It replaces all earlier versions. Questions about this policy "
            "should be addressed to Financial Crime Compliance, who can also advise on its application to a "
            "particular customer or transaction.",
            align="J", new_x=XPos.LMARGIN, new_y=YPos.NEXT,
        )

    def contents(self) -> None:
        front = self.policy.front_matter
        self.set_font(FONT, "B", 16)
        self.set_text_color(*NAVY)
        self.cell(0, 10, "Contents", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.set_text_color(0, 0, 0)
        self.ln(2)
        self.set_font(FONT, "", BODY_SIZE)
        width = self.w - self.l_margin - self.r_margin - 12
        for section in self.policy.sections:
            dots = "." * int((width - self.get_string_width(section.title) - 3) / self.get_string_width("."))
            self.cell(width, 7, f"{section.title} {dots}")
            self.cell(12, 7, self.layout.section_pages.get(section.title, "0"), align="R",
                      new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.ln(6)
        self.subheading("Key requirements at a glance")
        self.set_font(FONT, "", BODY_SIZE)
        for point in front.at_a_glance:
            self.cell(6, LINE, "-")
            self.multi_cell(0, LINE, point, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
            self.ln(1.2)
        self.ln(4)
        self.subheading("Related policies")
        self.set_font(FONT, "", BODY_SIZE)
        for name in front.related:
            self.cell(6, LINE, "-")
            self.cell(0, LINE, name, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.ln(4)
        self.multi_cell(
            0, LINE,
            "Clause references in this manual take the form section.clause, for example 6.1, with lettered "
            "items such as 3.1.(c). The summary above is for convenience only; where it differs from the "
            "clauses of the policy, the clauses prevail.",
            align="J", new_x=XPos.LMARGIN, new_y=YPos.NEXT,
        )

    def subheading(self, text: str) -> None:
        self.set_font(FONT, "B", 12)
        self.set_text_color(*NAVY)
        self.cell(0, 7, text, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.set_text_color(0, 0, 0)
        self.ln(1)

    # -- the whole document ------------------------------------------------------------------------------------

    def draw(self) -> None:
        if self.front_pages:
            self.add_page()
            self.set_page_label("r")
            self.cover()
            self.add_page()
            self.contents()
            self.add_page()
            self.set_page_label("D", label_start=1)
        else:
            self.add_page()
            self.title_block()
        for section in self.policy.sections:
            self.section_heading(section)
            for clause in section.clauses:
                self.clause(clause)
            if section.table:
                self.schedule_table(section.table)
        self.measured.body_pages = self.page_no() - self.front_pages


def _heading_style() -> FontFace:
    return FontFace(emphasis="BOLD", color=(255, 255, 255), fill_color=NAVY)


def render_pdf(policy: Policy) -> bytes:
    """The policy as PDF bytes. Two passes: the first measures section pages and page count for the second."""
    first = ManualPDF(policy, Layout())
    first.draw()
    final = ManualPDF(policy, first.measured)
    final.draw()
    if final.measured != first.measured:
        raise RuntimeError(f"{policy.file_name}: layout changed between passes")
    return bytes(final.output())


def render_markdown(policy: Policy) -> str:
    """The policy as a Markdown document: `#` title, `##` sections, one paragraph per numbered clause."""
    lines = [
        f"# {policy.title}",
        "",
        f"{FIRM} - reference {policy.reference}, version {policy.version}, effective {long_date(policy.effective)}.",
        f"Policy owner: {policy.owner}. Approved by: {policy.approver}. Next review: {policy.next_review}.",
        "",
        f"> {policy.statement}",
    ]
    for section in policy.sections:
        lines += ["", f"## {section.title}"]
        for clause in section.clauses:
            lines += ["", f"{clause.id} {clause.text}"]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------------------------
# Gold questions. Quotes are copied from the clause text; pages are found, not typed.


@dataclass(frozen=True)
class Evidence:
    """A place that supports an answer: the document, the clause (None for a summary or a table) and a quote."""

    document: str
    clause: str | None
    quote: str


@dataclass(frozen=True)
class Gold:
    id: str
    question: str
    answer: str | None = None
    evidence: tuple[Evidence, ...] = ()
    also: tuple[Evidence, ...] = ()


def q(qid: str, question: str, answer: str, *evidence: Evidence, also: tuple[Evidence, ...] = ()) -> Gold:
    return Gold(qid, question, answer, evidence, also)


def unanswerable(qid: str, question: str) -> Gold:
    return Gold(qid, question)


AML, V1, V2 = AML_KYC.file_name, RETENTION_V1.file_name, RETENTION_V2.file_name
GIFT, COMP, OUTS, SEC = GIFTS.file_name, COMPLAINTS.file_name, OUTSOURCING.file_name, INFOSEC.file_name
WHISTLE = WHISTLEBLOWING.file_name
E = Evidence

GOLD = (
    q("aml-cash-threshold", "Above what amount does a cash transaction require customer due diligence?",
      "Any cash transaction, or series of linked cash transactions, above EUR 10,000 (or the equivalent in "
      "another currency) requires customer due diligence, even if the customer already holds an account.",
      E(AML, "3.1.(c)", "any cash transaction, or series of linked cash transactions, above EUR 10,000"),
      also=(E(AML, None, "Cash of more than EUR 10,000, in one go or in linked amounts"),)),
    q("aml-sar-deadline", "How quickly must an employee report a suspicion of money laundering to the MLRO?",
      "Within 24 hours of forming the suspicion, by submitting an internal suspicious activity report on the "
      "Financial Crime portal.",
      E(AML, "6.1", "must submit an internal suspicious activity report to the MLRO within 24 hours of forming "
                    "the suspicion"),
      also=(E(AML, None, "never later than one day after you form it"),)),
    q("aml-cdd-retention", "What retention period does the AML policy set for customer due diligence records, "
                           "and does any other policy set a longer one?",
      "The AML policy requires CDD records to be kept for 5 years from the end of the business relationship, but "
      "a longer period in the Data Retention Policy prevails: the current version keeps customer records, "
      "including due diligence evidence, for 7 years after the relationship ends.",
      E(AML, "7.1", "for 5 years from the end of the business relationship"),
      E(V2, "4.2", "are retained for 7 years after the end of the customer relationship")),
    q("aml-pep-approval", "Who has to approve a business relationship with a politically exposed person?",
      "The MLRO and a member of the Executive Committee, in writing, before the account is opened.",
      E(AML, "4.2.1", "only be established or continued with the written approval of the MLRO and of a member "
                      "of the Executive Committee"),
      also=(E(AML, None, "Politically exposed persons need MLRO and Executive Committee sign-off"),)),
    q("aml-former-pep", "For how long is someone still treated as a PEP after leaving public office?",
      "For at least 12 months after leaving office, and longer if the MLRO considers that the person still "
      "presents a higher risk.",
      E(AML, "4.2.4", "continues to be treated as a PEP for at least 12 months after leaving office")),
    q("aml-beneficial-owner", "What level of ownership makes a person a beneficial owner whom the Bank must "
                              "identify?",
      "Owning or controlling, directly or indirectly, more than 25% of the shares or voting rights of the "
      "customer.",
      E(AML, "3.3.2", "more than 25% of the shares or voting rights of the customer")),
    q("aml-review-frequency", "How often is the due diligence on a High risk customer reviewed?",
      "Every 12 months (Medium risk every 24 months, Low risk every 36 months), and also on trigger events.",
      E(AML, "2.3", "every 12 months for High risk customers")),
    q("retention-customer-current", "How long must customer records be kept under the current Data Retention "
                                    "Policy?",
      "7 years after the end of the customer relationship, under version 2.0 effective 1 March 2025 (version "
      "1.0 said 5 years).",
      E(V2, "4.2", "are retained for 7 years after the end of the customer relationship"),
      also=(E(V2, "8.1", "The retention period for customer records rose from 5 years to 7 years"),
            E(V2, None, "Customer records 7 years End of relationship"))),
    q("retention-customer-2023", "How long were customer records kept under the Data Retention Policy in force "
                                 "in 2023?",
      "5 years after the end of the customer relationship, under version 1.0 effective 1 January 2023.",
      E(V1, "4.2", "are retained for 5 years after the end of the customer relationship")),
    q("retention-email", "How long is business email retained?",
      "3 years from the date it was sent or received under the current policy (version 2.0); version 1.0 said "
      "2 years.",
      E(V2, "4.4", "is retained for 3 years from the date it was sent or received"),
      also=(E(V2, "8.2", "Business email is now kept for 3 years instead of 2 years"),
            E(V2, None, "Business email 3 years Sent or received"))),
    q("retention-teams-chats", "How long are Microsoft Teams chat messages retained?",
      "3 years, the same as business email; chats that record a business decision must also be saved to the "
      "relevant records system.",
      E(V2, "4.8", "such as Microsoft Teams, are retained for 3 years")),
    q("retention-paper-disposal", "How must paper records containing personal information be destroyed?",
      "By cross-cut shredding to at least security level P-4 of DIN 66399, on site or by the approved "
      "confidential waste contractor.",
      E(V2, "6.1", "cross-cut shredding to at least security level P-4 of DIN 66399"),
      also=(E(V1, "6.1", "cross-cut shredding to at least security level P-4 of DIN 66399"),)),
    q("retention-legal-hold", "Who can suspend the deletion of records because of litigation or an "
                              "investigation?",
      "The General Counsel, by placing a legal hold; it stays until the General Counsel releases it in writing.",
      E(V2, "5.1", "The General Counsel may place a legal hold"),
      also=(E(V1, "5.1", "The General Counsel may place a legal hold"),)),
    q("gifts-approval-threshold", "Above what value does a gift need Compliance approval?",
      "A gift worth more than GBP 100 needs the prior approval of Compliance, requested through the Gifts and "
      "Entertainment Register.",
      E(GIFT, "4.2", "A gift with a value above GBP 100 may only be given or accepted with the prior approval "
                     "of Compliance")),
    q("gifts-register-deadline", "By when must a gift worth GBP 100 or less be recorded?",
      "In the Gifts and Entertainment Register within 5 business days; no prior approval is needed.",
      E(GIFT, "4.1", "must be recorded in the Gifts and Entertainment Register within 5 business days")),
    q("gifts-public-official", "Can I give a small gift to a public official without approval?",
      "No. Any gift, entertainment or hospitality for a public official, whatever its value, needs the prior "
      "written approval of Compliance.",
      E(GIFT, "4.5", "given to a public official, whatever its value, requires the prior written approval of "
                     "Compliance")),
    q("gifts-entertainment-approval", "Who must approve client entertainment costing GBP 400 per person?",
      "Compliance, because it costs more than GBP 250 per person (the Head of Compliance as well only above "
      "GBP 1,000 per person).",
      E(GIFT, "4.3", "Entertainment costing more than GBP 250 per person requires the approval of Compliance")),
    q("complaints-acknowledgement", "Within what time must a complaint be acknowledged?",
      "In writing within 5 business days of receipt.",
      E(COMP, "4.1", "acknowledges every complaint in writing within 5 business days of receipt")),
    q("complaints-final-response", "What is the deadline for sending a final response to a complaint?",
      "Within 8 weeks of receipt (payment services complaints: 15 business days, at most 35 in exceptional "
      "circumstances).",
      E(COMP, "4.3", "sends a final response to every other complaint within 8 weeks of receipt")),
    q("complaints-ombudsman", "How long does a customer have to take a complaint to the Financial Ombudsman "
                              "Service?",
      "6 months from the date of the Bank's final response.",
      E(COMP, "7.1", "within 6 months of the date of the final response")),
    q("outsourcing-regulator-notice", "How far in advance must the regulators be told about a new material "
                                      "outsourcing?",
      "At least 30 days before the Bank enters into it; the PRA and the FCA are both notified.",
      E(OUTS, "7.1", "notifies the PRA and the FCA at least 30 days in advance")),
    q("outsourcing-approval", "Who approves a new material outsourcing arrangement?",
      "The Board of Directors, on the recommendation of the Operational Risk Committee.",
      E(OUTS, "3.3", "The Board of Directors approves every new material outsourcing arrangement")),
    q("outsourcing-exit-testing", "How often must exit plans for material outsourcing be tested?",
      "At least every 3 years (and reviewed every year by the Business Owner).",
      E(OUTS, "9.3", "tested at least every 3 years")),
    q("infosec-lockout", "How many failed logon attempts lock an account, and for how long?",
      "5 consecutive failed attempts lock the account for 30 minutes (control AC-7).",
      E(SEC, "AC-7", "An account is locked for 30 minutes after 5 consecutive failed logon attempts")),
    q("infosec-password-length", "What is the minimum password length?",
      "14 characters (control IA-5); passwords are also checked against known compromised passwords.",
      E(SEC, "IA-5", "Passwords must be at least 14 characters long")),
    q("infosec-critical-patches", "How quickly must critical security patches be applied?",
      "Within 14 days of release (30 days for high, 90 days for other vulnerabilities; control SI-2).",
      E(SEC, "SI-2", "within 14 days of release for critical vulnerabilities")),
    q("whistleblowing-anonymous", "Can I raise a whistleblowing concern anonymously?",
      "Yes, through the independent ClearVoice hotline, which does not reveal the caller's identity to the Bank "
      "unless the caller agrees.",
      E(WHISTLE, "3.2", "Concerns may be raised anonymously through the ClearVoice hotline")),
    unanswerable("none-crypto-custody", "What controls apply when the Bank holds crypto-assets in custody for "
                                        "clients?"),
    unanswerable("none-share-price", "What was Northwind Capital Bank's share price at the end of 2024?"),
    unanswerable("none-mortgage-ltv", "What is the maximum loan-to-value ratio for a residential mortgage?"),
    unanswerable("none-annual-leave", "How many days of annual leave are employees entitled to?"),
    unanswerable("none-cet1-target", "What is the Bank's target Common Equity Tier 1 capital ratio?"),
    unanswerable("none-cctv-retention", "How long is CCTV footage from branches retained?"),
    unanswerable("none-atm-limit", "What is the daily cash withdrawal limit at the Bank's ATMs?"),
    unanswerable("none-external-auditor", "Which firm audits the Bank's annual accounts?"),
)


def normalise(text: str) -> str:
    """Collapse all whitespace (pdfium puts CR LF at every line end) to single spaces."""
    return " ".join(text.split())


def page_texts(path: Path) -> list[str]:
    """Whitespace-normalised text of each page as pypdfium2 extracts it; a Markdown file is one text."""
    if path.suffix == ".md":
        return [normalise(path.read_text(encoding="utf-8"))]
    pdf = pypdfium2.PdfDocument(path)
    try:
        return [normalise(page.get_textpage().get_text_range()) for page in pdf]
    finally:
        pdf.close()


def locate(evidence: Evidence, texts: dict[str, list[str]], policies: dict[str, Policy]) -> dict:
    """The evidence as a gold record with its physical page (None for Markdown); ValueError unless the quote
    is on exactly one page and, given a clause, inside that clause."""
    quote = normalise(evidence.quote)
    if evidence.clause is not None and quote not in normalise(policies[evidence.document].clause(evidence.clause).text):
        raise ValueError(f"{evidence.document}: quote is not in clause {evidence.clause}: {quote!r}")
    pages = [i + 1 for i, text in enumerate(texts[evidence.document]) if quote in text]
    if len(pages) != 1:
        raise ValueError(f"{evidence.document}: quote found on pages {pages}, expected exactly one: {quote!r}")
    page = pages[0] if evidence.document.endswith(".pdf") else None  # ingest reads Markdown as one unnumbered page
    return {"document": evidence.document, "page": page, "passage_id": evidence.clause, "quote": quote}


def gold_records(texts: dict[str, list[str]], policies: dict[str, Policy]) -> list[dict]:
    """Every gold question as a JSON-ready record; SystemExit listing every quote that could not be placed."""
    records, problems = [], []
    for gold in GOLD:
        try:
            evidence = [locate(e, texts, policies) for e in gold.evidence]
            also = [
                {k: v for k, v in locate(e, texts, policies).items() if k != "quote"} for e in gold.also
            ]
        except (ValueError, KeyError) as error:
            problems.append(f"{gold.id}: {error}")
            continue
        records.append({
            "id": gold.id,
            "question": gold.question,
            "answerable": bool(gold.evidence),
            "answer": gold.answer,
            "evidence": evidence,
            "also": also,
        })
    if len({gold.id for gold in GOLD}) != len(GOLD):
        problems.append("gold ids are not unique")
    if problems:
        raise SystemExit("gold set does not match the rendered corpus:\n  " + "\n  ".join(problems))
    return records


def main() -> None:
    CORPUS.mkdir(parents=True, exist_ok=True)
    GOLD_FILE.parent.mkdir(parents=True, exist_ok=True)
    policies = {p.file_name: p for p in (*PDF_POLICIES, WHISTLEBLOWING)}
    for policy in PDF_POLICIES:
        (CORPUS / policy.file_name).write_bytes(render_pdf(policy))
    (CORPUS / WHISTLEBLOWING.file_name).write_text(render_markdown(WHISTLEBLOWING), encoding="utf-8")

    texts = {name: page_texts(CORPUS / name) for name in policies}
    records = gold_records(texts, policies)
    GOLD_FILE.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")

    for name, pages in texts.items():
        words = [len(text.split()) for text in pages]
        print(f"{name}: {len(pages)} page(s), words per page {words}")
    answerable = sum(r["answerable"] for r in records)
    print(f"{GOLD_FILE.relative_to(DATA.parent)}: {answerable} answerable, {len(records) - answerable} unanswerable")


if __name__ == "__main__":
    sys.exit(main())
