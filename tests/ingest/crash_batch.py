"""The 10-PDF batch of the crash-safety test: the 7 PDFs of data/corpus plus 3 short policies rendered at test time
by the code that renders the sample corpus (data/make_sample_corpus.py), so no PDF is committed for it."""

from __future__ import annotations

import datetime
import sys
from pathlib import Path

from tests.library import CORPUS, ROOT


def _renderer():
    """data/make_sample_corpus.py and data/sample_policies.py, imported the way `make sample-corpus` runs them."""
    sys.path.insert(0, str(ROOT / "data"))
    try:
        import make_sample_corpus
        import sample_policies
    finally:
        sys.path.remove(str(ROOT / "data"))
    return make_sample_corpus, sample_policies


def _extra_policies(sp) -> list:
    c, section = sp.c, sp.section

    def policy(file_name: str, title: str, reference: str, statement: str, *sections):
        return sp.Policy(file_name=file_name, title=title, reference=reference, version="1.0",
                         effective=datetime.date(2024, 5, 1), owner="Chief Compliance Officer",
                         approver="Board Risk Committee, 15 April 2024", next_review="May 2025",
                         statement=statement, sections=sections)

    return [
        policy(
            "market_abuse_policy.pdf", "Market Abuse Policy", "NCB-MKT-004",
            "The Bank does not tolerate insider dealing, unlawful disclosure of inside information or market "
            "manipulation, and it reports suspicious orders and transactions to the FCA without delay.",
            section("Section 1 - Scope",
                    c("1.1", "This policy applies to every employee, contractor and director who deals in "
                             "financial instruments for the Bank or for a personal account."),
                    c("1.2", "Inside information is precise information, not generally available, that would be "
                             "likely to have a significant effect on the price of an instrument if made public.")),
            section("Section 2 - Personal Account Dealing",
                    c("2.1", "Employees must obtain pre-clearance from Compliance before any personal trade and "
                             "must hold any instrument bought for at least 30 days."),
                    c("2.2", "Trades in instruments on the restricted list are prohibited while the instrument "
                             "stays on the list.")),
            section("Section 3 - Surveillance and Reporting",
                    c("3.1", "Compliance reviews order and trade surveillance alerts daily and closes each alert "
                             "with a documented rationale within 5 business days."),
                    c("3.2", "A suspicious transaction and order report is submitted to the FCA within 24 hours "
                             "of the suspicion being confirmed.")),
        ),
        policy(
            "business_continuity_policy.pdf", "Business Continuity Policy", "NCB-OPS-007",
            "The Bank keeps its important business services within impact tolerance through severe but plausible "
            "disruptions, and tests that it can do so at least once a year.",
            section("Section 1 - Important Business Services",
                    c("1.1", "Each important business service has an owner, a mapped set of people, processes, "
                             "technology and suppliers, and an impact tolerance approved by the Board."),
                    c("1.2", "Payments and customer access to accounts have an impact tolerance of 4 hours.")),
            section("Section 2 - Recovery",
                    c("2.1", "Critical systems are replicated to a secondary data centre with a recovery point "
                             "objective of 15 minutes."),
                    c("2.2", "The crisis management team convenes within 1 hour of a major incident being "
                             "declared.")),
            section("Section 3 - Testing",
                    c("3.1", "Every important business service is tested against at least two severe but "
                             "plausible scenarios each year, and lessons learned are tracked to closure.")),
        ),
        policy(
            "sanctions_compliance_policy.pdf", "Sanctions Compliance Policy", "NCB-FCC-009",
            "The Bank complies with the financial sanctions of the United Kingdom, the European Union, the "
            "United Nations and the United States, and never helps a customer to evade them.",
            section("Section 1 - Screening",
                    c("1.1", "Customers, beneficial owners and payment counterparties are screened against the "
                             "consolidated sanctions lists at onboarding and daily thereafter."),
                    c("1.2", "A potential match is reviewed by Financial Crime Compliance within 1 business day; "
                             "the payment is held until the review is complete.")),
            section("Section 2 - Reporting",
                    c("2.1", "A confirmed match is frozen at once and reported to OFSI as soon as practicable, "
                             "and in any case within 5 business days."),
                    c("2.2", "Employees must not tell a customer that a report has been made.")),
        ),
    ]


def write_batch(folder: Path) -> list[Path]:
    """Write the 3 extra PDFs into folder; returns the 10 PDFs of the batch in the order they are ingested: the
    first and last versions of the retention policy far apart (the second is a new version that supersedes the
    first), the largest PDF (AML, 7 pages) last."""
    render, sp = _renderer()
    folder.mkdir(parents=True, exist_ok=True)
    extra = []
    for policy in _extra_policies(sp):
        path = folder / policy.file_name
        path.write_bytes(render.render_pdf(policy))
        extra.append(path)
    market, continuity, sanctions = extra
    corpus = [CORPUS / name for name in (
        "complaints_handling_policy.pdf", "data_retention_policy_v1.pdf", "gifts_entertainment_policy.pdf",
        "information_security_policy.pdf", "data_retention_policy_v2.pdf", "outsourcing_policy.pdf",
        "aml_kyc_policy.pdf")]
    complaints, v1, gifts, infosec, v2, outsourcing, aml = corpus
    return [complaints, market, v1, gifts, continuity, infosec, v2, sanctions, outsourcing, aml]
