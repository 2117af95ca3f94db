"""The text of the sample compliance manual of Northwind Capital Bank plc, a fictional bank, as plain data.

`make_sample_corpus.py` renders each `Policy` to a PDF (and the whistleblowing policy to Markdown). Latin-1 only:
the PDFs use a core font.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

FIRM = "Northwind Capital Bank plc"


@dataclass(frozen=True)
class Clause:
    """One numbered clause; `heading` marks a numbered sub-heading such as "3.2 Legal entities"."""

    id: str
    text: str
    heading: bool = False


@dataclass(frozen=True)
class Section:
    """A numbered section: its heading, its clauses and, for schedules, an optional table (first row = header)."""

    title: str
    clauses: tuple[Clause, ...]
    table: tuple[tuple[str, ...], ...] = ()


@dataclass(frozen=True)
class FrontMatter:
    """A cover page and a contents page, printed with roman page labels before the body starts at page 1."""

    series: str
    history: tuple[tuple[str, str, str], ...]
    at_a_glance: tuple[str, ...]
    related: tuple[str, ...]


@dataclass(frozen=True)
class Policy:
    """One policy document of the manual."""

    file_name: str
    title: str
    reference: str
    version: str
    effective: datetime.date
    owner: str
    approver: str
    next_review: str
    statement: str
    sections: tuple[Section, ...]
    front_matter: FrontMatter | None = None

    def clause(self, clause_id: str) -> Clause:
        """The clause with this id; KeyError if the policy has none."""
        for section in self.sections:
            for clause in section.clauses:
                if clause.id == clause_id:
                    return clause
        raise KeyError(f"{self.file_name} has no clause {clause_id}")


def section(title: str, *clauses: Clause, table: tuple[tuple[str, ...], ...] = ()) -> Section:
    return Section(title, clauses, table)


def c(clause_id: str, text: str) -> Clause:
    return Clause(clause_id, text)


def h(clause_id: str, title: str) -> Clause:
    return Clause(clause_id, title, heading=True)


def long_date(day: datetime.date) -> str:
    """'1 March 2025'."""
    return f"{day.day} {day:%B %Y}"


# --------------------------------------------------------------------------------------------------------------
# Anti-Money Laundering and Know Your Customer Policy

AML_KYC = Policy(
    file_name="aml_kyc_policy.pdf",
    title="Anti-Money Laundering and Know Your Customer Policy",
    reference="NCB-COM-001",
    version="4.2",
    effective=datetime.date(2025, 1, 1),
    owner="Money Laundering Reporting Officer (MLRO)",
    approver="Board Risk Committee, 10 December 2024",
    next_review="December 2025",
    statement=(
        "Northwind Capital Bank plc has zero tolerance for money laundering, terrorist financing and sanctions "
        "evasion. The Bank will only do business with customers whose identity it has established and verified, "
        "whose activity it understands, and whose funds it has reasonable grounds to believe are legitimate."
    ),
    front_matter=FrontMatter(
        series="Group Compliance Manual - Part 2: Financial Crime",
        history=(
            ("4.0", "1 March 2023", "Full rewrite following the 2022 business-wide risk assessment."),
            ("4.1", "1 February 2024", "Added electronic identity verification and liveness checks."),
            ("4.2", "1 January 2025", "Review frequencies by risk rating; former PEP treatment clarified."),
        ),
        at_a_glance=(
            "Identify and verify every customer and every beneficial owner before the relationship begins.",
            "Cash of more than EUR 10,000, in one go or in linked amounts, always needs full due diligence.",
            "Politically exposed persons need MLRO and Executive Committee sign-off and a source of wealth check.",
            "Tell the MLRO about any suspicion straight away - never later than one day after you form it.",
            "Never tell the customer, or anyone else, that a report has been or may be made.",
            "Keep due diligence evidence and transaction records for at least five years after the relationship.",
        ),
        related=(
            "NCB-COM-002 Sanctions Policy",
            "NCB-COM-004 Gifts and Entertainment Policy",
            "NCB-DP-003 Data Retention Policy",
            "NCB-HR-011 Whistleblowing Policy",
        ),
    ),
    sections=(
        section(
            "Section 1 - Purpose and Scope",
            c(
                "1.1",
                "This policy sets out the minimum standards that Northwind Capital Bank plc (the Bank) and its "
                "subsidiaries apply to prevent the Bank from being used for money laundering, terrorist financing "
                "or the evasion of financial sanctions. It gives effect to the Money Laundering, Terrorist "
                "Financing and Transfer of Funds (Information on the Payer) Regulations 2017 (the MLRs), the "
                "Proceeds of Crime Act 2002, the Terrorism Act 2000 and the guidance of the Joint Money "
                "Laundering Steering Group.",
            ),
            c(
                "1.2",
                "The policy applies to all employees, contractors, temporary staff and appointed representatives "
                "of the Bank, in every business line and in every jurisdiction in which the Bank operates. Where "
                "local law in a branch or subsidiary imposes a stricter requirement than this policy, the "
                "stricter requirement applies and the local Compliance Officer records the difference in the "
                "local addendum.",
            ),
            c(
                "1.3",
                "The Board has appointed a Money Laundering Reporting Officer (MLRO), who is the nominated officer "
                "for the purposes of the Proceeds of Crime Act 2002 and who holds the Senior Management Function "
                "SMF17. The MLRO is responsible for the oversight of the Bank's compliance with this policy and "
                "may delegate tasks, but not accountability, to one or more Deputy MLROs.",
            ),
            c(
                "1.4",
                "A breach of this policy may lead to disciplinary action up to and including dismissal. Some "
                "breaches, such as failing to report a suspicion or tipping off a customer, are also criminal "
                "offences for which an individual may be prosecuted personally.",
            ),
        ),
        section(
            "Section 2 - Risk-Based Approach",
            c(
                "2.1",
                "The Bank maintains a business-wide money laundering and terrorist financing risk assessment "
                "covering its customers, products, geographies, delivery channels and transactions. The MLRO "
                "refreshes the assessment at least once a year and whenever the Bank launches a new product or "
                "enters a new market, and the Board Risk Committee approves it.",
            ),
            c(
                "2.2",
                "Every customer is assigned a risk rating of Low, Medium or High at onboarding using the Customer "
                "Risk Assessment Model (CRAM). No account may be opened until a risk rating has been recorded.",
            ),
            c(
                "2.2.1",
                "The rating takes into account the nature and ownership structure of the customer, the country "
                "of residence or incorporation, the source of funds, the expected account activity, the products "
                "and channels used, and any adverse media found during screening.",
            ),
            c(
                "2.2.2",
                "A customer with a material connection to a country on the Bank's High-Risk Jurisdictions List, "
                "or whose business involves money service businesses, crypto-asset exchanges or high-value "
                "dealing, is rated High automatically and cannot be downgraded without the approval of the MLRO.",
            ),
            c(
                "2.3",
                "Customer risk ratings and due diligence are reviewed every 12 months for High risk customers, "
                "every 24 months for Medium risk customers and every 36 months for Low risk customers. A review "
                "is also triggered by any change of ownership or control, an unusual transaction alert, a "
                "sanctions or adverse media hit, or a request for a new high-risk product.",
            ),
        ),
        section(
            "Section 3 - Customer Due Diligence",
            c("3.1", "The Bank applies customer due diligence (CDD) measures when it:"),
            c("3.1.(a)", "establishes a business relationship with a new customer;"),
            c(
                "3.1.(b)",
                "carries out an occasional transaction that amounts to a transfer of funds exceeding EUR 1,000;",
            ),
            c(
                "3.1.(c)",
                "carries out any cash transaction, or series of linked cash transactions, above EUR 10,000 or the "
                "equivalent in any other currency, whether or not the customer already holds an account;",
            ),
            c(
                "3.1.(d)",
                "suspects money laundering or terrorist financing, regardless of any exemption or threshold that "
                "would otherwise apply; or",
            ),
            c("3.1.(e)", "doubts the truth or adequacy of documents or information previously obtained."),
            h("3.2", "Individuals"),
            c(
                "3.2.1",
                "For an individual customer the Bank obtains the full legal name, date of birth, residential "
                "address and nationality, and verifies identity using a valid passport, national identity card or "
                "photocard driving licence, together with a proof of address dated within the last three months.",
            ),
            c(
                "3.2.2",
                "Where the customer is not met face to face, identity is verified through the Bank's approved "
                "electronic identity verification provider, including a biometric liveness check, or by a copy of "
                "the identity document certified by a solicitor, accountant or bank official.",
            ),
            h("3.3", "Legal entities and beneficial owners"),
            c(
                "3.3.1",
                "For a legal entity the Bank obtains the registered name, registration number, registered office, "
                "principal place of business and the names of all directors, and verifies its existence against "
                "an official company register or its constitutional documents.",
            ),
            c(
                "3.3.2",
                "The Bank identifies every beneficial owner who ultimately owns or controls, directly or "
                "indirectly, more than 25% of the shares or voting rights of the customer, and takes reasonable "
                "measures to verify their identity. Where no individual meets this test, the senior managing "
                "official of the customer is recorded as the beneficial owner.",
            ),
            c(
                "3.3.3",
                "Any material discrepancy between the beneficial ownership information held by the Bank and the "
                "information on the register of people with significant control must be reported to Companies "
                "House within 30 days of its discovery.",
            ),
            c(
                "3.4",
                "The Bank establishes the purpose and intended nature of every business relationship and records "
                "the expected source of funds, the expected monthly turnover and the main counterparties, so that "
                "later activity can be compared against this profile.",
            ),
            c(
                "3.5",
                "Where CDD cannot be completed, the Bank must not open the account or carry out the transaction, "
                "and must end any existing business relationship. The relationship manager must consider whether "
                "the failure itself gives grounds for suspicion and, if so, report it under Section 6.",
            ),
            c(
                "3.6",
                "Simplified due diligence may be applied only to customers rated Low that fall within Annex A, such "
                "as UK public authorities and companies listed on a regulated market. Its use requires the prior "
                "approval of Financial Crime Compliance and is never permitted where there is a suspicion.",
            ),
        ),
        section(
            "Section 4 - Enhanced Due Diligence",
            c("4.1", "The Bank applies enhanced due diligence (EDD) in addition to CDD where:"),
            c(
                "4.1.(a)",
                "the customer or a beneficial owner is a politically exposed person (PEP), a family member of a "
                "PEP or a known close associate of a PEP;",
            ),
            c(
                "4.1.(b)",
                "the customer is established in a high-risk third country identified by HM Treasury or by the "
                "Financial Action Task Force;",
            ),
            c("4.1.(c)", "the Bank enters into a correspondent relationship with a respondent bank outside the UK;"),
            c("4.1.(d)", "the customer is rated High under the Customer Risk Assessment Model; or"),
            c(
                "4.1.(e)",
                "a transaction is complex or unusually large, or forms part of an unusual pattern of transactions "
                "with no apparent economic or lawful purpose.",
            ),
            h("4.2", "Politically exposed persons"),
            c(
                "4.2.1",
                "A business relationship with a PEP, or with an entity of which a PEP is a beneficial owner, may "
                "only be established or continued with the written approval of the MLRO and of a member of the "
                "Executive Committee, obtained before the account is opened.",
            ),
            c(
                "4.2.2",
                "The Bank must establish the source of wealth and the source of funds of a PEP and corroborate them "
                "with documentary evidence such as audited accounts, payslips, tax returns, sale contracts or "
                "grants of probate.",
            ),
            c(
                "4.2.3",
                "Relationships with PEPs are subject to enhanced ongoing monitoring, and the relationship manager "
                "and Financial Crime Compliance review each of them at least every 12 months.",
            ),
            c(
                "4.2.4",
                "A person who has ceased to be entrusted with a prominent public function continues to be treated "
                "as a PEP for at least 12 months after leaving office, and for longer if the MLRO considers that "
                "the person still presents a higher risk.",
            ),
            c(
                "4.3",
                "Other EDD measures may include obtaining further information on the customer and its owners, a "
                "site visit, more frequent transaction monitoring, and requiring the first payment to be made "
                "from an account in the customer's own name with a regulated bank.",
            ),
        ),
        section(
            "Section 5 - Ongoing Monitoring and Sanctions Screening",
            c(
                "5.1",
                "All customer transactions are monitored by the automated transaction monitoring system against "
                "scenarios calibrated by Financial Crime Compliance. An analyst must review each alert within 5 "
                "business days and either close it with a documented rationale or escalate it as an internal "
                "suspicious activity report.",
            ),
            c(
                "5.2",
                "Relationship managers keep customer information up to date. Identity documents that have expired "
                "are replaced at the next periodic review, and any change in the customer's activity that is "
                "inconsistent with the recorded profile must be explained and documented.",
            ),
            c(
                "5.3",
                "All customers, beneficial owners and payment counterparties are screened against the UK, United "
                "Nations, European Union and US OFAC sanctions lists at onboarding, and existing customers are "
                "rescreened daily. A potential match is escalated to the Sanctions team, and no funds may be "
                "released until the match has been discounted.",
            ),
        ),
        section(
            "Section 6 - Suspicious Activity Reporting",
            c(
                "6.1",
                "Any employee who knows or suspects, or has reasonable grounds for knowing or suspecting, that a "
                "person is engaged in money laundering or terrorist financing must submit an internal suspicious "
                "activity report to the MLRO within 24 hours of forming the suspicion, using the internal SAR form "
                "on the Financial Crime portal.",
            ),
            c(
                "6.2",
                "Employees must not discuss the suspicion with the customer or with any other person who does not "
                "need to know. Tipping off is a criminal offence under section 333A of the Proceeds of Crime Act "
                "2002, and the customer must not be told that a report has been made or is being considered.",
            ),
            c(
                "6.3",
                "The MLRO or a Deputy MLRO considers each internal report and decides whether to submit a "
                "suspicious activity report to the National Crime Agency (NCA). The MLRO records the decision and "
                "the reasons for it whether or not an external report is made.",
            ),
            c(
                "6.4",
                "Where the Bank needs a defence against money laundering from the NCA, the transaction must not "
                "proceed until consent is received or the notice period of 7 working days expires without a "
                "refusal. If consent is refused, the moratorium period of 31 calendar days applies.",
            ),
            c(
                "6.5",
                "Internal reports and NCA correspondence are held only in the MLRO's restricted case management "
                "system and must never be placed on the customer file.",
            ),
        ),
        section(
            "Section 7 - Record Keeping",
            c(
                "7.1",
                "The Bank keeps copies of the documents and information obtained for CDD and EDD, and the "
                "supporting records of transactions, for 5 years from the end of the business relationship or from "
                "the date of the occasional transaction. The Data Retention Policy may set a longer period for a "
                "class of records, in which case the longer period applies.",
            ),
            c(
                "7.2",
                "Internal suspicious activity reports, MLRO decisions and NCA correspondence are kept by the MLRO "
                "for 5 years from the date of the decision, separately from customer records.",
            ),
            c(
                "7.3",
                "When the retention period ends, personal data obtained for CDD is deleted unless the Bank is "
                "required to keep it for legal proceedings or by a law enforcement request, or the customer has "
                "consented to its further retention.",
            ),
        ),
        section(
            "Section 8 - Training and Governance",
            c(
                "8.1",
                "All staff complete anti-money laundering training within 30 days of joining and every year "
                "thereafter. Staff in customer-facing, operations and payments roles complete additional "
                "role-specific training, and completion rates are reported to the Executive Committee each month.",
            ),
            c(
                "8.2",
                "The MLRO presents an annual report to the Board on the operation and effectiveness of the Bank's "
                "systems and controls, the volume of internal and external reports, and the actions needed to "
                "address any weaknesses found.",
            ),
            c(
                "8.3",
                "Internal Audit reviews the design and operating effectiveness of the Bank's anti-money laundering "
                "controls at least every two years. The MLRO reviews this policy every year.",
            ),
        ),
        section(
            "Annex A - Customers Eligible for Simplified Due Diligence",
            c(
                "A.1",
                "Subject to clause 3.6, simplified due diligence may be considered for the following customers, "
                "provided that they are rated Low and that nothing suggests a higher risk:",
            ),
            c("A.1.(a)", "UK public authorities and bodies with public functions established by statute;"),
            c(
                "A.1.(b)",
                "companies whose securities are admitted to trading on a UK or EEA regulated market and which are "
                "subject to disclosure requirements that ensure adequate transparency of beneficial ownership;",
            ),
            c(
                "A.1.(c)",
                "credit and financial institutions supervised for anti-money laundering purposes in the UK or in "
                "a country with equivalent requirements; and",
            ),
            c(
                "A.1.(d)",
                "pooled client accounts held by UK regulated solicitors, where the Bank can obtain the identity "
                "of the underlying clients on request.",
            ),
            c(
                "A.2",
                "Simplified due diligence reduces the extent of verification, not the obligation to identify the "
                "customer. The Bank still records the customer's identity, screens the customer against sanctions "
                "lists and monitors the relationship, and applies full CDD as soon as the risk changes.",
            ),
            c(
                "A.3",
                "Financial Crime Compliance keeps a list of all customers subject to simplified due diligence and "
                "reviews it every 12 months to confirm that each customer remains eligible.",
            ),
        ),
    ),
)


# --------------------------------------------------------------------------------------------------------------
# Data Retention Policy, two versions: v2 supersedes v1. The differences are listed in v2's Section 8.

def _retention_policy(v2: bool) -> Policy:
    customer_years = "7 years" if v2 else "5 years"
    email_years = "3 years" if v2 else "2 years"
    applicant_months = "12 months" if v2 else "6 months"
    periods = [
        c(
            "4.1",
            "The retention periods below are minimum and maximum periods: records must be kept for the period "
            "stated and must be deleted or destroyed within 90 days after it ends, unless a legal hold applies "
            "under Section 5.",
        ),
        c(
            "4.2",
            f"Customer records, including account opening documents, due diligence evidence, statements and "
            f"correspondence, are retained for {customer_years} after the end of the customer relationship.",
        ),
        c(
            "4.3",
            "Transaction records and payment instructions are retained for 7 years after the end of the "
            "financial year in which the transaction took place, to meet tax and accounting requirements.",
        ),
        c(
            "4.4",
            f"Business email of all staff is retained for {email_years} from the date it was sent or received, "
            "after which it is deleted automatically from the email archive.",
        ),
        c(
            "4.5",
            "Recordings of telephone calls and electronic communications relating to investment services are "
            "retained for 5 years from the date of the recording, in line with the recording requirements of "
            "the FCA Handbook (SYSC 10A).",
        ),
        c(
            "4.6",
            "Employee personnel files are retained for 6 years after employment ends. Payroll and pension "
            "records are retained for 7 years after the end of the tax year to which they relate.",
        ),
        c(
            "4.7",
            f"Personal data of unsuccessful job applicants is retained for {applicant_months} after the "
            "recruitment decision, unless the applicant has agreed to be considered for future vacancies.",
        ),
    ]
    if v2:
        periods.append(
            c(
                "4.8",
                "Chat messages in instant messaging and collaboration tools, such as Microsoft Teams, are retained "
                "for 3 years, the same period as business email. Chats that record a business decision must "
                "also be saved to the relevant records system.",
            )
        )
    schedule = (
        ("Record class", "Retention period", "Starts from", "Clause"),
        ("Customer records", customer_years, "End of relationship", "4.2"),
        ("Transaction records", "7 years", "End of financial year", "4.3"),
        ("Business email", email_years, "Sent or received", "4.4"),
        ("Call recordings", "5 years", "Date of recording", "4.5"),
        ("Personnel files", "6 years", "End of employment", "4.6"),
        ("Job applicant data", applicant_months, "Recruitment decision", "4.7"),
    ) + ((("Instant messaging chats", "3 years", "Sent or received", "4.8"),) if v2 else ())

    sections = [
        section(
            "Section 1 - Purpose and Scope",
            c(
                "1.1",
                "This policy sets out how long Northwind Capital Bank plc keeps the records it creates and "
                "receives, and how it disposes of them at the end of their life. It supports the Bank's "
                "obligations under the UK General Data Protection Regulation, the Data Protection Act 2018, the "
                "FCA Handbook and tax legislation.",
            ),
            c(
                "1.2",
                "The policy covers records in every format, including paper files, electronic documents, "
                "databases, email, voice recordings and backups, held by the Bank or by a service provider on the "
                "Bank's behalf.",
            ),
            c(
                "1.3",
                "This version supersedes version 1.0 dated 1 January 2023. Records created before the effective "
                "date follow the periods in this version from that date onward."
                if v2
                else "This is the first version of the policy. It replaces the local retention guidelines that "
                "individual departments maintained before 2023.",
            ),
        ),
        section(
            "Section 2 - Roles and Responsibilities",
            c(
                "2.1",
                "The Data Protection Officer (DPO) owns this policy, maintains the retention schedule and advises "
                "on the retention of personal data.",
            ),
            c(
                "2.2",
                "Each Information Asset Owner is accountable for applying the retention periods to the records in "
                "the systems they own, and confirms each year to the DPO that expired records have been deleted.",
            ),
            c(
                "2.3",
                "The Records Management team runs the deletion process for the email archive, the document "
                "management system and the off-site paper archive, and keeps the certificates of destruction.",
            ),
            c(
                "2.4",
                "All staff must file records in the approved systems, must not keep personal copies of records "
                "on local drives or removable media, and must not destroy records that are subject to a legal "
                "hold.",
            ),
        ),
        section(
            "Section 3 - Retention Principles",
            c(
                "3.1",
                "Records are kept for as long as the Bank needs them for the purpose for which they were "
                "collected, or for as long as the law requires, and for no longer. Personal data is not kept "
                "simply because it might be useful one day.",
            ),
            c(
                "3.2",
                "Where two retention periods apply to the same record, the longer period applies. Where a record "
                "does not fit a class in Section 4, the Information Asset Owner agrees a period with the DPO "
                "before the record is created in volume.",
            ),
        ),
        section("Section 4 - Retention Periods", *periods),
        section(
            "Section 5 - Legal Holds",
            c(
                "5.1",
                "The General Counsel may place a legal hold on records relevant to actual or reasonably "
                "anticipated litigation, a regulatory investigation or a law enforcement request. A legal hold "
                "suspends deletion for the records it covers, whatever their retention period.",
            ),
            c(
                "5.2",
                "Legal Services notifies the affected Information Asset Owners in writing, and the hold stays in "
                "place until the General Counsel releases it in writing.",
            ),
        ),
        section(
            "Section 6 - Secure Disposal",
            c(
                "6.1",
                "Paper records containing confidential or personal information are destroyed by cross-cut "
                "shredding to at least security level P-4 of DIN 66399, either on site or by the Bank's approved "
                "confidential waste contractor.",
            ),
            c(
                "6.2",
                "Electronic media are sanitised using a purge method consistent with NIST SP 800-88 before re-use "
                "or disposal. Media that cannot be purged are physically destroyed.",
            ),
            c(
                "6.3",
                "Deletion runs automatically every month for systems that support it."
                if v2
                else "Each Information Asset Owner runs a deletion review every quarter for the systems they own.",
            ),
            c(
                "6.4",
                "A certificate of destruction is obtained for every off-site destruction and kept by Records "
                "Management for 7 years.",
            ),
        ),
        section(
            "Section 7 - Exceptions and Review",
            c(
                "7.1",
                "Any exception to this policy must be approved in writing by the DPO and recorded in the "
                "exceptions log with its reason and an expiry date not more than 12 months ahead.",
            ),
            c(
                "7.2",
                "The DPO reviews this policy at least every two years, or earlier if the law or the Bank's "
                "business changes.",
            ),
        ),
    ]
    if v2:
        sections.append(
            section(
                "Section 8 - Summary of Changes from Version 1.0",
                c("8.1", "The retention period for customer records rose from 5 years to 7 years (clause 4.2)."),
                c("8.2", "Business email is now kept for 3 years instead of 2 years (clause 4.4)."),
                c(
                    "8.3",
                    "Job applicant data is now kept for 12 months instead of 6 months (clause 4.7), and instant "
                    "messaging chats are covered for the first time (clause 4.8).",
                ),
                c("8.4", "Quarterly deletion reviews were replaced by monthly automated deletion (clause 6.3)."),
            )
        )
    sections.append(section("Schedule 1 - Retention Schedule", table=schedule))

    effective = datetime.date(2025, 3, 1) if v2 else datetime.date(2023, 1, 1)
    return Policy(
        file_name=f"data_retention_policy_v{2 if v2 else 1}.pdf",
        title="Data Retention Policy",
        reference="NCB-DP-003",
        version="2.0" if v2 else "1.0",
        effective=effective,
        owner="Data Protection Officer",
        approver="Executive Committee, 11 February 2025" if v2 else "Executive Committee, 6 December 2022",
        next_review="March 2027" if v2 else "January 2025",
        statement=(
            "The Bank keeps records for as long as it needs them and the law requires, and then disposes of them "
            "securely. Keeping records for too short a time exposes the Bank to regulatory sanction; keeping "
            "them for too long breaches data protection law."
        ),
        sections=tuple(sections),
    )


RETENTION_V1 = _retention_policy(v2=False)
RETENTION_V2 = _retention_policy(v2=True)


# --------------------------------------------------------------------------------------------------------------
# Gifts and Entertainment Policy

GIFTS = Policy(
    file_name="gifts_entertainment_policy.pdf",
    title="Gifts and Entertainment Policy",
    reference="NCB-COM-004",
    version="3.1",
    effective=datetime.date(2024, 6, 1),
    owner="Head of Compliance",
    approver="Executive Committee, 14 May 2024",
    next_review="June 2026",
    statement=(
        "Gifts and entertainment can build good business relationships, but they must never influence, or "
        "appear to influence, a business decision. When in doubt, ask Compliance before you give or accept."
    ),
    sections=(
        section(
            "Section 1 - Purpose and Scope",
            c(
                "1.1",
                "This policy helps staff give and receive gifts and entertainment in a way that complies with the "
                "Bribery Act 2010 and the FCA rules on inducements in COBS 2.3 and COBS 2.3A, and that protects "
                "the Bank's reputation for acting with integrity.",
            ),
            c(
                "1.2",
                "It applies to all directors, employees and contractors of the Bank, and to gifts and "
                "entertainment given to or received from any customer, supplier, intermediary, public official "
                "or other third party, including where the cost is met personally.",
            ),
        ),
        section(
            "Section 2 - Definitions",
            c(
                "2.1",
                "A gift is anything of value given without charge or at a discount, including goods, vouchers, "
                "tickets that the giver will not attend, services and personal favours.",
            ),
            c(
                "2.2",
                "Entertainment is any meal, event, sporting or cultural occasion or hospitality at which both the "
                "giver and the recipient are present. If the host does not attend, the ticket is a gift.",
            ),
            c(
                "2.3",
                "A public official is anyone who holds a legislative, administrative or judicial position, works "
                "for a government body, a regulator or a state-owned enterprise, or acts for a public "
                "international organisation.",
            ),
        ),
        section(
            "Section 3 - General Principles",
            c("3.1", "Staff must never:"),
            c("3.1.(a)", "solicit a gift or entertainment from any person;"),
            c(
                "3.1.(b)",
                "give or accept cash, cash equivalents such as gift cards or vouchers that can be exchanged for "
                "cash, loans, or securities, whatever their value;",
            ),
            c(
                "3.1.(c)",
                "give or accept any gift or entertainment while a tender, contract negotiation or credit decision "
                "involving the other party is in progress; or",
            ),
            c("3.1.(d)", "give or accept anything that they would be embarrassed to see reported in the press."),
            c(
                "3.2",
                "Every gift and every occasion of entertainment must be reasonable and proportionate, have a clear "
                "business purpose, and be given openly rather than sent to a home address.",
            ),
        ),
        section(
            "Section 4 - Thresholds and Approval",
            c(
                "4.1",
                "A gift with a value of GBP 100 or less may be given or accepted without prior approval, but it "
                "must be recorded in the Gifts and Entertainment Register within 5 business days.",
            ),
            c(
                "4.2",
                "A gift with a value above GBP 100 may only be given or accepted with the prior approval of "
                "Compliance, requested through the Gifts and Entertainment Register before the gift is given or "
                "accepted.",
            ),
            c(
                "4.3",
                "Entertainment costing up to GBP 250 per person requires the approval of the employee's line "
                "manager. Entertainment costing more than GBP 250 per person requires the approval of Compliance, "
                "and entertainment costing more than GBP 1,000 per person also requires the approval of the Head "
                "of Compliance.",
            ),
            c(
                "4.4",
                "Compliance reviews any counterparty from which an employee receives more than four gifts, or "
                "gifts with a combined value above GBP 300, in any rolling 12 month period.",
            ),
            c(
                "4.5",
                "Any gift, entertainment or hospitality given to a public official, whatever its value, requires "
                "the prior written approval of Compliance.",
            ),
            c(
                "4.6",
                "Where the value of a gift is not known, the employee must estimate its retail value in good faith "
                "and record how the estimate was made.",
            ),
        ),
        section(
            "Section 5 - The Gifts and Entertainment Register",
            c(
                "5.1",
                "Compliance maintains the Gifts and Entertainment Register on the Compliance portal. Each entry "
                "records the date, the giver and recipient, a description, the actual or estimated value, the "
                "business purpose and the approvals obtained.",
            ),
            c(
                "5.2",
                "Compliance reviews the register every quarter to identify patterns such as repeated gifts from a "
                "single supplier, and reports the findings to the Conduct Risk Committee.",
            ),
            c("5.3", "Register entries are retained for 5 years from the date of the entry."),
        ),
        section(
            "Section 6 - Travel and Accommodation",
            c(
                "6.1",
                "The Bank pays for the travel and accommodation of its own staff attending events organised by "
                "third parties. Travel or accommodation paid for by a customer or supplier may only be accepted "
                "with the prior approval of Compliance.",
            ),
            c(
                "6.2",
                "Staff must not offer to pay for travel or accommodation of a customer, supplier or public "
                "official without the prior approval of Compliance.",
            ),
        ),
        section(
            "Section 7 - Declining and Returning Gifts",
            c(
                "7.1",
                "A gift that cannot be approved must be returned to the giver with a polite letter explaining the "
                "Bank's policy. Template letters are available on the Compliance portal.",
            ),
            c(
                "7.2",
                "If returning a gift is impractical or would cause offence, it must be handed to Compliance, who "
                "will donate it to the Bank's nominated charity of the year and record the donation in the "
                "register.",
            ),
        ),
        section(
            "Section 8 - Breaches",
            c(
                "8.1",
                "Failure to record or obtain approval for a gift or entertainment is a breach of this policy and "
                "may lead to disciplinary action. Staff who suspect that a gift was offered as a bribe must report "
                "it to Compliance immediately, or through the Whistleblowing Policy.",
            ),
            c(
                "8.2",
                "Line managers who approve entertainment are responsible for checking that it is proportionate and "
                "has a business purpose, and must not approve entertainment that they themselves will attend.",
            ),
        ),
        section(
            "Section 9 - Worked Examples",
            c(
                "9.1",
                "A supplier sends a Christmas hamper worth about GBP 80 to an employee's office. The employee may "
                "keep it or share it with the team, and records it in the register within 5 business days.",
            ),
            c(
                "9.2",
                "A corporate client offers a relationship manager two tickets to a cup final, which the client will "
                "not attend, with a face value of GBP 450. The tickets are a gift above GBP 100, so the relationship "
                "manager must obtain the prior approval of Compliance, which will normally be refused.",
            ),
            c(
                "9.3",
                "An employee takes a prospective customer to dinner at a cost of GBP 120 per person while the customer's "
                "loan application is being assessed. This is prohibited by clause 3.1.(c), whatever the approval "
                "thresholds in Section 4 would otherwise allow.",
            ),
            c(
                "9.4",
                "A supplier offers an employee a discount on a personal purchase that is not available to all "
                "staff. The discount is a gift and is treated according to its value under Section 4.",
            ),
        ),
    ),
)


# --------------------------------------------------------------------------------------------------------------
# Complaints Handling Policy

COMPLAINTS = Policy(
    file_name="complaints_handling_policy.pdf",
    title="Complaints Handling Policy",
    reference="NCB-CUS-002",
    version="5.0",
    effective=datetime.date(2024, 9, 1),
    owner="Head of Customer Relations",
    approver="Conduct Risk Committee, 20 August 2024",
    next_review="September 2025",
    statement=(
        "Every complaint is an opportunity to put things right for the customer and to improve the way the Bank "
        "works. Complaints are handled fairly, promptly and free of charge, in line with the FCA's Dispute "
        "Resolution: Complaints sourcebook (DISP) and the Consumer Duty."
    ),
    sections=(
        section(
            "Section 1 - Purpose and Scope",
            c(
                "1.1",
                "This policy sets out how the Bank receives, investigates and resolves complaints from eligible "
                "complainants, and how it learns from them. It applies to every business line and to complaints "
                "about services provided by outsourced service providers on the Bank's behalf.",
            ),
            c(
                "1.2",
                "The Head of Customer Relations owns this policy. The Director of Retail Banking holds the "
                "Senior Management Function responsibility for complaints handling under the Senior Managers and "
                "Certification Regime.",
            ),
        ),
        section(
            "Section 2 - What Is a Complaint",
            c(
                "2.1",
                "A complaint is any oral or written expression of dissatisfaction, whether justified or not, "
                "from or on behalf of a customer about the Bank's provision of, or failure to provide, a financial "
                "service, which alleges that the customer has suffered, or may suffer, financial loss, material "
                "distress or material inconvenience.",
            ),
            c(
                "2.2",
                "Staff must not ask a customer to put a complaint in writing, and must treat an expression of "
                "dissatisfaction as a complaint even if the customer does not use the word complaint.",
            ),
        ),
        section(
            "Section 3 - Receiving Complaints",
            c(
                "3.1",
                "Complaints may be made by any reasonable means, including in branch, by telephone, by letter, by "
                "email, through online banking and through social media.",
            ),
            c(
                "3.2",
                "The member of staff who receives a complaint records it in the Complaints Management System on "
                "the same business day, including the customer's own description of the problem and the outcome "
                "the customer is seeking.",
            ),
        ),
        section(
            "Section 4 - Timescales",
            c(
                "4.1",
                "The Bank acknowledges every complaint in writing within 5 business days of receipt, giving the "
                "complaint reference, the name of the complaint handler and how to contact them.",
            ),
            c(
                "4.2",
                "A complaint resolved to the customer's satisfaction by the close of the third business day after "
                "the day of receipt may be closed with a summary resolution communication instead of a final "
                "response.",
            ),
            c(
                "4.3",
                "The Bank sends a final response to every other complaint within 8 weeks of receipt. A complaint "
                "handler who expects to miss this deadline must escalate the case to the Complaints Team Leader "
                "by the end of week 6.",
            ),
            c(
                "4.4",
                "Complaints about payment services are answered within 15 business days of receipt. In "
                "exceptional circumstances outside the Bank's control a holding reply may extend this to 35 "
                "business days, and the holding reply must explain the reason for the delay.",
            ),
            c(
                "4.5",
                "If the Bank cannot issue a final response within 8 weeks, it writes to the customer to explain "
                "why, to say when it expects to respond, and to tell the customer that they may now refer the "
                "complaint to the Financial Ombudsman Service.",
            ),
        ),
        section(
            "Section 5 - Investigation",
            c(
                "5.1",
                "Complaints are investigated by a trained complaint handler who was not involved in the matter "
                "complained about. The handler gathers all relevant evidence, including call recordings, and "
                "speaks to the customer to understand the complaint in full.",
            ),
            c(
                "5.2",
                "The handler identifies the root cause of every upheld complaint and records it in the "
                "Complaints Management System using the root cause taxonomy.",
            ),
        ),
        section(
            "Section 6 - Final Response and Redress",
            c(
                "6.1",
                "The final response explains the Bank's decision and the reasons for it in plain language, sets "
                "out any redress offered, and encloses the Financial Ombudsman Service leaflet.",
            ),
            c(
                "6.2",
                "Where a complaint is upheld, the Bank puts the customer back into the position they would have "
                "been in had the error not occurred, including interest at 8% simple per year on any money the "
                "customer was deprived of.",
            ),
            c(
                "6.3",
                "Compensation for distress and inconvenience of up to GBP 500 may be approved by the Complaints "
                "Team Leader. Higher amounts require the approval of the Head of Customer Relations.",
            ),
        ),
        section(
            "Section 7 - Escalation to the Financial Ombudsman Service",
            c(
                "7.1",
                "Every final response tells the customer that they may refer the complaint to the Financial "
                "Ombudsman Service free of charge within 6 months of the date of the final response, and whether "
                "the Bank consents to the Ombudsman considering a complaint that is out of time.",
            ),
            c(
                "7.2",
                "The Bank cooperates fully with the Ombudsman, provides the complete case file within 14 days of a "
                "request, and implements any award promptly. Ombudsman decisions are reviewed by Legal Services "
                "to identify wider issues.",
            ),
        ),
        section(
            "Section 8 - Vulnerable Customers",
            c(
                "8.1",
                "Complaint handlers look for signs of vulnerability, such as bereavement, illness or financial "
                "difficulty, and adapt the process, for example by agreeing a preferred contact method or by "
                "allowing a representative to act for the customer.",
            ),
        ),
        section(
            "Section 9 - Reporting and Records",
            c(
                "9.1",
                "Customer Relations reports complaint volumes, outcomes, timeliness and root causes to the "
                "Conduct Risk Committee every month, and submits the complaints return to the FCA every six months.",
            ),
            c(
                "9.2",
                "Records of each complaint and the measures taken to resolve it are retained for at least 5 years "
                "from the date the complaint was received.",
            ),
        ),
        section(
            "Section 10 - Complaints Involving Other Firms",
            c(
                "10.1",
                "Where a complaint concerns another firm, such as a card scheme or an insurer whose products the "
                "Bank distributes, and that firm is wholly or partly responsible, the Bank forwards the complaint "
                "to it promptly and tells the customer in writing why, and how to contact the other firm.",
            ),
            c(
                "10.2",
                "Where the Bank is jointly responsible with another firm, it deals with the part of the complaint "
                "that concerns the Bank and coordinates its response with the other firm so that the customer "
                "receives a consistent answer.",
            ),
        ),
        section(
            "Section 11 - Training and Quality Assurance",
            c(
                "11.1",
                "All customer-facing staff complete complaints training on joining and every year thereafter, "
                "covering how to recognise a complaint, how to record it and how to support vulnerable customers.",
            ),
            c(
                "11.2",
                "The Quality Assurance team reviews a sample of at least 5% of closed complaints every month "
                "against the standards in this policy, and reports its findings to the Head of Customer Relations.",
            ),
        ),
    ),
)


# --------------------------------------------------------------------------------------------------------------
# Outsourcing Policy

OUTSOURCING = Policy(
    file_name="outsourcing_policy.pdf",
    title="Outsourcing and Third Party Risk Policy",
    reference="NCB-OPS-007",
    version="2.3",
    effective=datetime.date(2024, 4, 1),
    owner="Chief Operating Officer",
    approver="Board of Directors, 27 March 2024",
    next_review="April 2025",
    statement=(
        "The Bank may outsource activities, but never its responsibility for them. Every outsourcing arrangement "
        "is assessed, contracted, monitored and capable of being exited without disruption to customers or to "
        "the Bank's regulatory obligations."
    ),
    sections=(
        section(
            "Section 1 - Purpose and Scope",
            c(
                "1.1",
                "This policy sets out the requirements for entering into, managing and exiting outsourcing "
                "arrangements. It implements SYSC 8 of the FCA Handbook and the PRA Supervisory Statement SS2/21 "
                "on outsourcing and third party risk management.",
            ),
            c(
                "1.2",
                "It applies to all outsourcing arrangements of the Bank and its subsidiaries, including "
                "intragroup arrangements and cloud services, and to any sub-outsourcing by a service provider.",
            ),
        ),
        section(
            "Section 2 - Definitions",
            c(
                "2.1",
                "Outsourcing means an arrangement under which a service provider performs a process, service or "
                "activity that the Bank would otherwise perform itself.",
            ),
            c(
                "2.2",
                "A material outsourcing is an outsourcing of a service that is critical or important to the "
                "Bank, whose failure or poor performance would materially impair the Bank's ability to meet its "
                "regulatory obligations, its financial performance, or the continuity of its services to "
                "customers.",
            ),
        ),
        section(
            "Section 3 - Governance",
            c(
                "3.1",
                "Each outsourcing arrangement has a named Business Owner, of at least Director grade, who is "
                "accountable for the arrangement throughout its life.",
            ),
            c(
                "3.2",
                "Third Party Risk Management maintains the Outsourcing Register, which records every arrangement, "
                "its materiality, the data it involves, the location of the service and any sub-outsourcing.",
            ),
            c(
                "3.3",
                "The Board of Directors approves every new material outsourcing arrangement and any significant "
                "change to an existing one, on the recommendation of the Operational Risk Committee.",
            ),
        ),
        section(
            "Section 4 - Materiality Assessment",
            c(
                "4.1",
                "Before any outsourcing contract is signed, the Business Owner completes a materiality assessment "
                "that considers the impact of a failure of the service on customers, on the Bank's operational "
                "resilience and important business services, on its compliance with regulation, and the "
                "difficulty of substituting the provider.",
            ),
            c(
                "4.2",
                "Third Party Risk Management reviews the assessment. Arrangements that support an important "
                "business service are treated as material unless the Chief Operating Officer agrees otherwise.",
            ),
        ),
        section(
            "Section 5 - Due Diligence",
            c(
                "5.1",
                "Before selecting a provider for a material outsourcing, the Bank carries out due diligence on "
                "the provider's financial soundness, business continuity arrangements, information security, "
                "data protection, use of sub-contractors, ownership, reputation and ability to comply with the "
                "Bank's regulatory obligations.",
            ),
            c(
                "5.2",
                "Due diligence for material outsourcing arrangements is refreshed every year, and for other "
                "arrangements at least every 3 years, or sooner if the provider's circumstances change.",
            ),
            c(
                "5.3",
                "The Bank also assesses concentration risk, including reliance on a small number of cloud "
                "providers across several arrangements.",
            ),
        ),
        section(
            "Section 6 - Contractual Requirements",
            c("6.1", "Every material outsourcing contract must include:"),
            c(
                "6.1.(a)",
                "unrestricted rights of access, audit and information for the Bank, its auditors, the PRA and "
                "the FCA;",
            ),
            c("6.1.(b)", "the locations where the service is provided and where data is stored;"),
            c("6.1.(c)", "a requirement for the Bank's prior written approval of any material sub-outsourcing;"),
            c(
                "6.1.(d)",
                "service levels, business continuity testing obligations and incident notification duties; and",
            ),
            c(
                "6.1.(e)",
                "termination rights for the Bank, with a notice period of at least 6 months and an obligation on "
                "the provider to support an orderly transfer of the service.",
            ),
        ),
        section(
            "Section 7 - Notifying the Regulators",
            c(
                "7.1",
                "The Bank notifies the PRA and the FCA at least 30 days in advance before it enters into a "
                "material outsourcing arrangement or significantly changes an existing one. The notification is "
                "prepared by Third Party Risk Management and sent by Regulatory Affairs.",
            ),
            c(
                "7.2",
                "The Bank also notifies the regulators promptly of any significant disruption to a material "
                "outsourced service, and of the provider's failure or insolvency.",
            ),
        ),
        section(
            "Section 8 - Monitoring",
            c(
                "8.1",
                "The Business Owner holds service reviews with each material provider every quarter, reviewing "
                "performance against the service levels, incidents, audit findings and changes in the risk "
                "profile.",
            ),
        ),
        section(
            "Section 9 - Exit Plans",
            c(
                "9.1",
                "Every material outsourcing arrangement has a documented exit plan covering both a stressed exit, "
                "following the provider's sudden failure, and a planned exit at the end of the contract.",
            ),
            c(
                "9.2",
                "The exit plan identifies alternative providers or the option of bringing the service back in "
                "house, the time and cost of the transition, and the data and assets to be returned.",
            ),
            c(
                "9.3",
                "Exit plans are reviewed every year by the Business Owner and tested at least every 3 years, "
                "for example by a desktop exercise, and the results are reported to the Operational Risk "
                "Committee.",
            ),
        ),
        section(
            "Section 10 - Cloud Outsourcing",
            c(
                "10.1",
                "Cloud services are subject to this policy in the same way as other outsourcing. In addition, the "
                "Chief Information Security Officer approves the security configuration of every cloud service "
                "that holds customer data before it goes live.",
            ),
            c(
                "10.2",
                "Customer data may only be stored in cloud regions within the UK or the European Economic Area "
                "unless the Data Protection Officer has approved a transfer assessment.",
            ),
        ),
        section(
            "Section 11 - Intragroup Outsourcing",
            c(
                "11.1",
                "Services provided by other companies of the Northwind group are treated as outsourcing. They "
                "follow the same materiality assessment, due diligence, contractual and exit requirements, "
                "although the depth of due diligence may reflect the Bank's control over the provider.",
            ),
            c(
                "11.2",
                "An intragroup agreement must not prevent the Bank from exiting the arrangement if the provider "
                "is sold, restructured or fails, and must give the PRA and the FCA the same access rights as any "
                "other material outsourcing contract.",
            ),
        ),
    ),
)


# --------------------------------------------------------------------------------------------------------------
# Information Security Policy: the control clauses carry control ids in the style of NIST SP 800-53.

INFOSEC = Policy(
    file_name="information_security_policy.pdf",
    title="Information Security Policy",
    reference="NCB-SEC-001",
    version="6.0",
    effective=datetime.date(2024, 11, 1),
    owner="Chief Information Security Officer (CISO)",
    approver="Operational Risk Committee, 15 October 2024",
    next_review="November 2025",
    statement=(
        "The Bank protects the confidentiality, integrity and availability of the information entrusted to it by "
        "customers, colleagues and counterparties. The controls in this policy are mandatory for every system "
        "and every user."
    ),
    sections=(
        section(
            "Section 1 - Purpose and Scope",
            c(
                "1.1",
                "This policy sets out the Bank's mandatory information security controls. Control identifiers "
                "follow the families of NIST SP 800-53, so that the same identifier is used in this policy, in the "
                "control library and in audit reports.",
            ),
            c(
                "1.2",
                "The policy applies to all information systems owned or operated by the Bank or on its behalf, "
                "and to every employee, contractor and third party user of those systems.",
            ),
            c(
                "1.3",
                "The CISO owns this policy and may approve time-limited exceptions of up to 6 months, recorded in "
                "the risk register with compensating controls.",
            ),
        ),
        section(
            "Section 2 - Access Control (AC)",
            c(
                "AC-2",
                "Account management. Every user account is requested through the access management system and "
                "approved by the user's line manager and the owner of the system. Accounts of leavers are "
                "disabled by the end of their last working day, and accounts unused for 60 days are disabled "
                "automatically.",
            ),
            c(
                "AC-2.(a)",
                "Privileged accounts are reviewed by the system owner every quarter, and standard user accounts "
                "every 6 months. Access that is no longer needed is removed within 5 business days of the review.",
            ),
            c(
                "AC-5",
                "Separation of duties. No single user may both initiate and approve a payment, or both develop "
                "and deploy code to a production system.",
            ),
            c(
                "AC-6",
                "Least privilege. Users receive only the access their role requires. Administrators use a "
                "separate privileged account, which they check out from the privileged access management vault "
                "for a limited period.",
            ),
            c(
                "AC-7",
                "Unsuccessful logon attempts. An account is locked for 30 minutes after 5 consecutive failed "
                "logon attempts, or until it is unlocked by the Service Desk after the user's identity has been "
                "verified.",
            ),
            c(
                "AC-11",
                "Device lock. Workstations and laptops lock automatically after 10 minutes of inactivity, and "
                "users lock their screen whenever they leave their device unattended.",
            ),
            c(
                "AC-17",
                "Remote access. Remote access to the Bank's network is only permitted from Bank-managed devices "
                "through the corporate VPN, with multi-factor authentication.",
            ),
        ),
        section(
            "Section 3 - Identification and Authentication (IA)",
            c(
                "IA-2",
                "Identification and authentication of users. Multi-factor authentication is required for all "
                "remote access, for all privileged access, and for access to any system that holds customer data "
                "from outside the Bank's offices.",
            ),
            c(
                "IA-5",
                "Authenticator management. Passwords must be at least 14 characters long and are checked against "
                "a list of known compromised passwords. Passwords are not changed on a fixed schedule, but must "
                "be changed at once if compromise is suspected.",
            ),
            c(
                "IA-5.(a)",
                "Passwords and keys of service accounts are stored in the secrets vault and rotated at least every "
                "90 days. They must never be embedded in source code or configuration files.",
            ),
        ),
        section(
            "Section 4 - Audit and Accountability (AU)",
            c(
                "AU-2",
                "Event logging. Systems log successful and failed logons, use of privileged accounts, changes to "
                "access rights and changes to security settings, and send these events to the central security "
                "monitoring platform.",
            ),
            c(
                "AU-11",
                "Audit record retention. Security logs are retained for at least 13 months, of which the most "
                "recent 3 months are kept immediately available for analysis.",
            ),
        ),
        section(
            "Section 5 - Incident Response (IR)",
            c(
                "IR-4",
                "Incident handling. The Security Operations Centre (SOC) triages, contains and investigates "
                "security incidents 24 hours a day, following the incident response playbooks, and the CISO leads "
                "the response to any major incident.",
            ),
            c(
                "IR-6",
                "Incident reporting. Staff report any suspected security incident, including a lost device or a "
                "suspicious email, to the SOC immediately and in any case within 1 hour of becoming aware of it. "
                "The Data Protection Officer notifies the Information Commissioner's Office of a personal data "
                "breach within 72 hours where required.",
            ),
        ),
        section(
            "Section 6 - System and Communications Protection (SC)",
            c(
                "SC-8",
                "Transmission confidentiality. Data in transit over any network outside the Bank's data centres "
                "is encrypted using TLS 1.2 or higher.",
            ),
            c(
                "SC-28",
                "Protection of information at rest. Customer data and confidential data at rest is encrypted "
                "with AES-256, and encryption keys are managed in hardware security modules.",
            ),
        ),
        section(
            "Section 7 - System and Information Integrity (SI)",
            c(
                "SI-2",
                "Flaw remediation. Security patches are applied within 14 days of release for critical "
                "vulnerabilities, within 30 days for high vulnerabilities and within 90 days for others. Systems "
                "that cannot be patched in time require an exception under clause 1.3.",
            ),
            c(
                "SI-3",
                "Malicious code protection. Anti-malware software is installed on all endpoints and servers and "
                "updated automatically every day.",
            ),
        ),
        section(
            "Section 8 - Awareness and Training (AT)",
            c(
                "AT-2",
                "Security awareness training. All users complete security awareness training on joining and "
                "every year thereafter, and the SOC runs a simulated phishing exercise every quarter. Users who "
                "fail two simulations in a row receive additional training.",
            ),
        ),
        section(
            "Section 9 - Physical and Environmental Protection (PE)",
            c(
                "PE-2",
                "Physical access authorisations. Access to data centres and communications rooms is limited to "
                "named individuals approved by the Head of Infrastructure, and the access list is reviewed every "
                "quarter.",
            ),
            c(
                "PE-3",
                "Physical access control. Visitors to secure areas sign in, wear a visible visitor badge and are "
                "escorted at all times. Clear desk rules apply in all offices at the end of each working day.",
            ),
        ),
        section(
            "Section 10 - Contingency Planning (CP)",
            c(
                "CP-4",
                "Contingency plan testing. Restoration from backup is tested at least every 6 months for each "
                "important business service, and the results are reported to the Operational Risk Committee.",
            ),
            c(
                "CP-9",
                "System backup. Systems that support important business services are backed up every day, and "
                "at least one copy is kept offline or immutable so that it cannot be altered by ransomware.",
            ),
        ),
    ),
)


# --------------------------------------------------------------------------------------------------------------
# Whistleblowing Policy, published as Markdown (the corpus's one non-PDF document).

WHISTLEBLOWING = Policy(
    file_name="whistleblowing_policy.md",
    title="Whistleblowing Policy",
    reference="NCB-HR-011",
    version="3.0",
    effective=datetime.date(2024, 7, 1),
    owner="Whistleblowers' Champion (Chair of the Audit Committee)",
    approver="Board of Directors, 19 June 2024",
    next_review="July 2025",
    statement=(
        "The Bank wants to hear about wrongdoing. Anyone who raises a genuine concern is protected, whether or "
        "not the concern turns out to be well founded."
    ),
    sections=(
        section(
            "1. Purpose and Scope",
            c(
                "1.1",
                "This policy explains how employees, contractors and former employees can raise concerns about "
                "wrongdoing at the Bank, and how the Bank protects them. It meets the requirements of SYSC 18 of "
                "the FCA Handbook and the Public Interest Disclosure Act 1998.",
            ),
        ),
        section(
            "2. What Can Be Reported",
            c(
                "2.1",
                "Reportable concerns include fraud, bribery, money laundering, breaches of regulation, risks to "
                "health and safety, damage to the environment, and the deliberate concealment of any of these.",
            ),
            c(
                "2.2",
                "Personal grievances about an individual's own employment are dealt with under the Grievance "
                "Policy, unless they also raise a matter of public interest.",
            ),
        ),
        section(
            "3. How to Raise a Concern",
            c(
                "3.1",
                "Concerns can be raised with a line manager, with the Head of Compliance, with the Whistleblowers' "
                "Champion, or through the independent ClearVoice hotline, which is available 24 hours a day.",
            ),
            c(
                "3.2",
                "Concerns may be raised anonymously through the ClearVoice hotline, which does not reveal the "
                "caller's identity to the Bank unless the caller agrees.",
            ),
            c(
                "3.3",
                "Nothing in this policy prevents anyone from reporting a concern directly to the FCA or the PRA.",
            ),
        ),
        section(
            "4. Protection",
            c(
                "4.1",
                "The Bank will not tolerate any detriment to a person who raises a concern in good faith. Anyone "
                "found to have victimised a whistleblower will face disciplinary action.",
            ),
            c(
                "4.2",
                "The identity of a whistleblower is shared only with those who need it to investigate the "
                "concern, unless the law requires otherwise.",
            ),
        ),
        section(
            "5. How Concerns Are Handled",
            c(
                "5.1",
                "The Whistleblowing Officer acknowledges every concern within 7 days and appoints an investigator "
                "who is independent of the matter reported.",
            ),
            c(
                "5.2",
                "The whistleblower receives feedback on the outcome within 3 months of the acknowledgement, as "
                "far as confidentiality allows.",
            ),
            c(
                "5.3",
                "The Whistleblowers' Champion reports to the Board every year on the operation of this policy, "
                "without identifying any whistleblower.",
            ),
        ),
    ),
)

PDF_POLICIES = (AML_KYC, RETENTION_V1, RETENTION_V2, GIFTS, COMPLAINTS, OUTSOURCING, INFOSEC)
