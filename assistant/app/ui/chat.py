"""The Ask tab: progress in words, a streamed draft, then the verified answer with [n] markers, flagged sentences and
source cards; each [n] (in the answer or on its card) is a link that opens the source panel beside the chat at the
cited page with the quoted span highlighted. Every answer goes to the audit trail and into the
user's current conversation; the sidebar lists their conversations (reopen, rename, export, delete), and the last
answer takes a thumbs up or down with a comment."""

import html
import logging
import re
import tempfile
from dataclasses import asdict, replace
from pathlib import Path

import gradio as gr

from assistant.app.actions import (
    WAITING,
    Kept,
    answer_stream,
    delete_conversation,
    export_conversation,
    rate_answer,
    rename_conversation,
    view_citation,
)
from assistant.app.audit import AuditError
from assistant.app.conversations import ConversationError, new_id, title_of
from assistant.app.ui.services import Services, audit_shown, parse_date
from assistant.app.users import User
from assistant.pdf_view import SourceViewError, describe_place
from assistant.pipeline import Draft, retrieval_query
from assistant.types import AbstainReason, Answer, Citation, Reading
from assistant.when import describe

log = logging.getLogger(__name__)
STREAM_CURSOR = " ▍"
# The streamed text is the model's draft: it is shown as such until the checked answer replaces it.
DRAFT_LABEL = "_Draft, not yet checked against the sources:_\n\n"
# While the draft does not look likely to pass the checks (assistant.pipeline.DraftCheck), progress in words.
DRAFT_WAITS = "It is shown as a draft once it looks likely to pass the checks."
DRAFT_TAKEN_OFF = "The draft was taken off the screen: a source it cites may not pass the checks. The checked " \
                  "answer follows."
UNSUPPORTED_NOTE = "not supported by the cited sources"
SOURCES_HINT = "<p class='hint'>Sources for the answer appear here.</p>"
SEARCHING = "Searching your documents…"
FOLLOW_UP_NOTE = "↪ _Follow-up: searched with your previous question too (“{previous}”)._"
# A citation link's target: the chat message of the answer and the source's number. The page's script (CITE_JS)
# puts it in the hidden #cite-pick box when the link is clicked or opened with Enter, and the server opens it.
CITE_HREF = "#cite-{message}-{n}"
CITE_PICKED = re.compile(r"#cite-(\d+)-(\d+)")
CITE_JS = """() => {
  const view = () => document.getElementById('source-view');
  // the chat's copy button copies a message as written: its [n] links as plain [n]
  const write = navigator.clipboard && navigator.clipboard.writeText.bind(navigator.clipboard);
  if (write) navigator.clipboard.writeText = (text) =>
    write(String(text).replace(/<a class='cite' href='#cite-\\d+-\\d+'[^>]*>(\\[\\d+\\])<\\/a>/g, '$1'));
  // a link's accessible name says what it opens ("Source 1: <title>, page 2"; its text stays "[1]"): Gradio's
  // sanitiser drops aria-label from a message, so it is set here, from the title, on every link the chat renders
  const name = () => document.querySelectorAll('a.cite:not([aria-label])').forEach((link) =>
    link.setAttribute('aria-label', (link.getAttribute('title') || '').replace(/^Open source/, 'Source')));
  new MutationObserver(name).observe(document.body, {childList: true, subtree: true});
  name();
  document.addEventListener('click', (event) => {
    const link = event.target.closest ? event.target.closest('a.cite') : null;
    if (!link) return;
    event.preventDefault();
    event.stopPropagation();
    const box = document.querySelector('#cite-pick textarea');
    if (!box) return;
    box.value = link.getAttribute('href') + '|' + Date.now();  // a new value each time: the same [n] opens again
    box.dispatchEvent(new Event('input', {bubbles: true}));
    view()?.scrollIntoView({block: 'start'});
  }, true);
}"""
SCROLL_TO_SOURCE_JS = "() => { document.getElementById('source-view')?.scrollIntoView({block: 'start'}); }"
VERDICT_WORDS = {"up": "👍 helpful", "down": "👎 not helpful"}


# What the chat says under an abstention whose cause is not simply "the documents do not say".
ABSTAIN_REASONS = {
    AbstainReason.NOT_ADDRESSED: "Passages on nearby topics were found, but none of them addresses this question "
                                 "(the relevance model's judgement), so no answer was drafted.",
    AbstainReason.NO_CONSENSUS: "Strict citations is on: an answer was written, but the passage it cites is not the "
                                "one both searches (by meaning and by keywords) put first, so it is not shown. Untick "
                                "\"Strict citations\" to see it.",
    AbstainReason.LOW_CONFIDENCE: "An answer was written, but the model was unsure of it, so it is not shown. Naming "
                                  "the document, the topic or the rule you mean may help.",
    AbstainReason.LOW_CITATION_SCORE: "An answer was written, but the passage it cites is not clearly the one that "
                                      "answers the question (other passages match about as well), so it is not "
                                      "shown.",
    AbstainReason.UNSUPPORTED: "An answer was written, but none of its sentences is stated in the passage it cites, "
                               "so it is not shown.",
}


def answer_markdown(answer: Answer, message: int | None = None, follow_up: str | None = None) -> str:
    """The answer as the chat shows it: sentences with [n] markers (links that open the source when the answer is
    chat message number `message`); unsupported ones flagged in words; a follow-up says it was searched with the
    previous question `follow_up`."""
    head = follow_up_note(follow_up) + in_force_note(answer)
    if answer.abstained:
        nearest = " The nearest passages are listed under Sources." if answer.sources else ""
        why = ABSTAIN_REASONS.get(answer.abstain_reason or "")
        found = "".join(f" The check found that {s.issue}." for s in answer.sentences if s.issue)
        return f"{head}{answer.answer}{nearest}" + (f"\n\n*{why}{found}*" if why else "")
    cited = {c.n: c for c in answer.citations} if message is not None else {}

    def marker(n: int) -> str:  # the model's own markers and the attached ones alike; one of no source stays text
        return cite_link(message, cited[n]) if n in cited else f"[{n}]"

    parts = []
    for s in answer.sentences:
        text = re.sub(r"\[(\d+)\]", lambda m: marker(int(m.group(1))), s.text) + "".join(
            f" {marker(n)}" for n in s.attached)
        note = UNSUPPORTED_NOTE + (f": {s.issue}" if s.issue else "")
        parts.append(text if s.supported else f"⚠ *{text}* **({note})**")
    return head + " ".join(parts)


def cite_link(message: int, c: Citation) -> str:
    """[n] as a link (focusable, opened with Enter) to source n of the answer in chat message `message`; its title
    (shown on hover) says which document and page it opens."""
    title = html.escape(f"Open source {c.n}: {c.title}, {where(c)}", quote=True)
    return f"<a class='cite' href='{CITE_HREF.format(message=message, n=c.n)}' title='{title}'>[{c.n}]</a>"


def in_force_note(answer: Answer) -> str:
    """The line above an answer searched in the versions in force at a time its question named; empty otherwise."""
    period = answer.in_force
    if not period:
        return ""
    return (f"*Searched the versions in force {describe(period)}, as the question asks "
            f"(\"{html.escape(period['words'])}\"), "
            "not only today's.*\n\n")


def follow_up_note(previous: str | None) -> str:
    """The line above an answer that was searched with the previous question too; empty for one that was not."""
    return FOLLOW_UP_NOTE.format(previous=previous) + "\n\n" if previous else ""


def searched_with(question: str, history: list) -> str | None:
    """The previous question when `question` is searched together with it (pipeline.retrieval_query), else None."""
    pairs = [tuple(pair) for pair in history or []]
    return pairs[-1][0] if pairs and retrieval_query(question, pairs) != question else None


def reading(passages: int) -> str:
    """The chat's progress line once the passages are found."""
    return f"Reading {passages} passage{'s' if passages != 1 else ''}…"


def writing(draft: str, shown: bool) -> str:
    """The chat's progress line while the draft is written but not shown (`assistant.pipeline.DraftCheck`: it does
    not look likely to pass the checks yet); `shown`: it was on screen and has been taken off."""
    words = len(draft.split())
    return f"Writing the answer… {words} word{'s' if words != 1 else ''} so far. " + (
        DRAFT_TAKEN_OFF if shown else DRAFT_WAITS)


def where(c: Citation) -> str:
    """'page 4 (printed page iv), clause 3.1.(c)' for a citation."""
    return describe_place(c.page, c.page_label, c.clause)


def sources_html(answer: Answer, message: int | None = None) -> str:
    """Source cards (title, file, page, clause, quote, score) and the verification summary, HTML-escaped; with the
    answer's chat `message`, each card's [n] is a link that opens the source."""
    esc = html.escape
    cards = answer.sources if answer.abstained else answer.citations
    if answer.abstained and answer.abstain_reason is not None and AbstainReason(answer.abstain_reason).withheld:
        head = "<p class='verdict abstained'>Withheld: the drafted answer did not pass the checks. Nearest passages:</p>"
    elif answer.abstained:
        head = ("<p class='verdict abstained'>Not answered: the loaded documents do not answer this question. "
                "Nearest passages:</p>")
    else:
        head = _verification(answer)
    items = []
    for c in cards:
        items.append(
            f"<div class='source-card' data-n='{c.n}'>"
            f"<div class='source-head'><span class='source-n'>"
            f"{cite_link(message, c) if message is not None else f'[{c.n}]'}</span> <b>{esc(c.title)}</b></div>"
            f"<div class='source-where'>{_source_where(c)}</div>"
            f"<blockquote>{esc(plain(c.quote))}</blockquote></div>")
    if not items:
        items.append("<p>No passage in the library is close to this question.</p>")
    return f"<div class='sources'>{head}{''.join(items)}</div>"


def plain(quote: str) -> str:
    """A quote as text: the Markdown of a Markdown source (headings' #, bold and italic stars, backticks) left out."""
    quote = re.sub(r"(^|\s)#{1,6}\s+", r"\1", quote)
    quote = re.sub(r"(\*\*|__)(.+?)\1", r"\2", quote)
    return re.sub(r"(?<!\w)[*`](\S(?:.*?\S)?)[*`](?!\w)", r"\1", quote)


def _source_where(c: Citation) -> str:
    """File, place, version and score of a source card; a saved answer's nearest sources have no file or version."""
    parts = (html.escape(c.file), html.escape(where(c)), f"comply version {c.version}" if c.version else "",
             f"retrieval score {c.score:.4f}")
    return " · ".join(p for p in parts if p)


def _verification(answer: Answer) -> str:
    total = len(answer.sentences)
    bad = [s for s in answer.sentences if not s.supported]
    if not bad:
        return f"<p class='verdict ok'>All {total} sentence(s) are supported by the cited sources.</p>"
    listed = "".join(f"<li>{html.escape(s.text)}" + (f" <i>({html.escape(s.issue)})</i>" if s.issue else "")
                     + "</li>" for s in bad)
    return (f"<p class='verdict warn'>{len(bad)} of {total} sentence(s) are {UNSUPPORTED_NOTE}; do not rely on "
            f"them:</p><ul class='unsupported'>{listed}</ul>")


def cards_of(answer: Answer) -> list[dict]:
    """The sources of an answer that its [n] links open: its citations, or an abstention's nearest passages."""
    return [asdict(c) for c in (answer.sources if answer.abstained else answer.citations)]


def document_choices(services: Services) -> list[tuple[str, str]]:
    """(title, document id) of every document in force, for the document filter."""
    records = services.library.catalog.documents(status="active")
    return [(f"{r.title} (comply version {r.version})", r.document_id) for r in records]


class ChatTab:
    """Builds the Ask tab and holds its handlers."""

    def __init__(self, services: Services):
        self.services = services

    def build(self) -> None:
        """Create the components and wire the events (inside a gr.Tab)."""
        with gr.Row():
            with gr.Column(scale=1, min_width=220, elem_id="conversation-sidebar"):
                self.new_button = gr.Button("New conversation", size="sm", elem_id="new-conversation")
                self.conversation_list = gr.Radio(label="Your conversations (newest first)", choices=[],
                                                  elem_id="conversations")
                self.title = gr.Textbox(label="Title", max_lines=1, elem_id="conversation-title")
                with gr.Row():
                    self.rename_button = gr.Button("Rename", size="sm", elem_id="rename-conversation")
                    self.export_button = gr.Button("Export", size="sm", elem_id="export-conversation")
                self.delete_confirm = gr.Checkbox(label="Yes, delete this conversation for good",
                                                  elem_id="delete-conversation-confirm")
                self.delete_button = gr.Button("Delete", size="sm", variant="stop", elem_id="delete-conversation")
                self.conversation_status = gr.Markdown(elem_id="conversation-status")
                self.export_files = gr.File(label="Exported conversation (Markdown, JSON)", file_count="multiple",
                                            interactive=False, visible=False, elem_id="conversation-export")
            with gr.Column(scale=3):
                self.chat = gr.Chatbot(label="Conversation", height=420, elem_id="chat", buttons=["copy"],
                                       feedback_options=("Like", "Dislike"), group_consecutive_messages=False)
                with gr.Row():
                    self.question = gr.Textbox(label="Your question", placeholder="e.g. How long must customer "
                                               "records be kept?", scale=5, elem_id="question", lines=1)
                    self.ask_button = gr.Button("Ask", variant="primary", scale=1, elem_id="ask")
                with gr.Row(visible=False, elem_id="feedback") as self.feedback_row:
                    self.thumbs_up = gr.Button("👍 Helpful", size="sm", scale=0, elem_id="thumbs-up")
                    self.thumbs_down = gr.Button("👎 Not helpful", size="sm", scale=0, elem_id="thumbs-down")
                    self.comment = gr.Textbox(placeholder="What was right or wrong? (optional)", show_label=False,
                                              max_lines=2, scale=3, elem_id="feedback-comment")
                self.feedback_status = gr.Markdown(elem_id="feedback-status")
            with gr.Column(scale=2):
                self.documents = gr.Dropdown(label="Only these documents (optional)", multiselect=True, choices=[],
                                             elem_id="doc-filter")
                self.as_of = gr.Textbox(label="Versions in force on (optional, YYYY-MM-DD)", elem_id="as-of")
                self.strict = gr.Checkbox(
                    label="Strict citations: answer only when both retrievers rank the cited source first "
                          "(fewer answers, more of them cite the right place)",
                    value=self.services.settings.consensus_citations, elem_id="strict")
                # the source panel: a [n] clicked in the answer or on a card opens its page here, scrolled into view
                with gr.Column(elem_id="source-view"):
                    self.source_caption = gr.Markdown(elem_id="source-caption")
                    self.page_image = gr.Image(label="Cited page (quoted passage highlighted)", type="pil",
                                               interactive=False, visible=False, elem_id="page-image",
                                               buttons=["download", "fullscreen"])
                    self.page_text = gr.HTML(visible=False, elem_id="page-text")
                self.sources = gr.HTML(SOURCES_HINT, elem_id="sources", label="Sources")
                self.cite_pick = gr.Textbox(visible="hidden", elem_id="cite-pick")  # set by CITE_JS
        self.history = gr.State([])
        self.cited = gr.State({})  # the chat's message index -> the sources its [n] links open
        self.conversation = gr.State(None)  # the id of the conversation on screen; None until its first answer
        self.last_turn = gr.State(None)  # the id of its last saved answer, which the thumbs rate
        self.turn_at = gr.State({})  # the chat's message index -> the id of the saved answer shown there

        shown = [self.conversation, self.last_turn, self.turn_at, self.conversation_list, self.feedback_row,
                 self.feedback_status]
        view = [self.source_caption, self.page_image, self.page_text]
        outputs = [self.chat, self.history, self.sources, *view, self.cited, self.question, *shown, self.title,
                   self.comment]
        inputs = [self.question, self.chat, self.history, self.documents, self.as_of, self.strict, self.conversation,
                  self.turn_at, self.cited]
        # A question asked while another is answered runs after it instead of being dropped.
        self.ask_button.click(self.ask, inputs, outputs, api_name="ask", trigger_mode="always_last")
        self.question.submit(self.ask, inputs, outputs, api_name=False, trigger_mode="always_last")
        self.cite_pick.change(self.open_source, [self.cite_pick, self.cited], view, api_name="open_source").then(
            None, None, None, js=SCROLL_TO_SOURCE_JS, api_name=False)
        cleared = [self.chat, self.history, self.sources, *view, self.cited, *shown, self.title]
        self.new_button.click(self.new_conversation, None, cleared, api_name=False)
        self.chat.clear(self.new_conversation, None, cleared, api_name=False)  # the chat's own bin icon
        self.conversation_list.input(self.open_conversation, [self.conversation_list], [*cleared, self.comment],
                                     api_name=False)
        self.rename_button.click(self.rename, [self.conversation, self.title],
                                 [self.conversation_list, self.conversation_status], api_name=False)
        self.delete_button.click(self.delete, [self.conversation, self.delete_confirm],
                                 [*cleared, self.delete_confirm, self.conversation_status], api_name=False)
        self.export_button.click(self.export, [self.conversation], [self.export_files, self.conversation_status],
                                 api_name=False)
        rated = [self.last_turn, self.comment]
        self.thumbs_up.click(self.rate_up, rated, [self.feedback_status], api_name=False)
        self.thumbs_down.click(self.rate_down, rated, [self.feedback_status], api_name=False)
        self.chat.like(self.rate_message, [self.turn_at, self.comment], [self.feedback_status], api_name=False)

    def conversation_choices(self, user: User) -> list[tuple[str, str]]:
        """(title and day, id) of `user`'s conversations, newest first, for the sidebar."""
        return [(f"{c.title} · {c.updated[:10]}", c.id) for c in self.services.conversations.list(user)]

    def on_load(self, request: gr.Request):
        """The sidebar of a page just opened (or reloaded): the user's conversations."""
        user = self.services.authorize(request, "chat")
        return gr.update(choices=self.conversation_choices(user), value=None)

    def ask(self, question: str, chat: list, history: list, documents: list, as_of: str, strict: bool,
            conversation: str | None, turn_at: dict, cited: dict, request: gr.Request):
        """Stream an answer into the chat (progress in words, then the draft), then show it verified with its
        sources; record it in the audit."""
        user = self.services.authorize(request, "chat")
        question = (question or "").strip()
        keep = gr.update()
        # the conversation, its last answer and where its answers are, the sidebar, the thumbs, their note, the title
        # and the comment
        unchanged = (keep,) * 8
        new, conversation = conversation is None, conversation or new_id()  # saved with its first answer
        try:  # a warning, not an error: an error would cover every output panel with a red badge
            if not question:
                raise ValueError("Type a question first.")
            as_of = parse_date(as_of, "as-of date")
            with audit_shown():  # fail closed: no answer, not even its draft, that cannot be recorded
                stream = answer_stream(self.services, user, question, documents=documents or None, as_of=as_of,
                                       strict=bool(strict), history=[tuple(pair) for pair in history or []],
                                       conversation=conversation)
        except (gr.Error, ValueError, ConversationError) as e:  # parse_date's gr.Error, ours, a foreign conversation
            log.info("question refused for %s: %s", user.name, getattr(e, "message", str(e)))
            gr.Warning(getattr(e, "message", str(e)))
            yield keep, keep, keep, keep, keep, keep, keep, keep, *unchanged
            return
        previous = searched_with(question, history)
        head = follow_up_note(previous)
        # a new message of its own: nothing of the previous answer (its draft, its sources, its page) stays in view
        chat = list(chat or []) + [{"role": "user", "content": question},
                                   {"role": "assistant", "content": head + SEARCHING}]
        hidden = gr.update(visible=False, value=None)
        yield (chat, history, f"<p class='hint'>{SEARCHING}</p>", "", hidden, hidden, cited, "", keep, keep, keep,
               keep, gr.update(visible=False), "", keep, "")
        pieces: list[str] = []
        answer = kept = None
        shown = False  # whether the draft has been on screen
        try:
            for item in stream:
                if isinstance(item, Kept):
                    kept = item
                    continue
                if isinstance(item, Answer):
                    answer = item
                    continue
                panel = keep
                if item is WAITING:
                    chat[-1]["content"] = head + "Waiting for a change to the library or the adapter to finish…"
                elif isinstance(item, Reading):
                    chat[-1]["content"] = head + reading(item.passages)
                    panel = f"<p class='hint'>{reading(item.passages)} Their cards appear with the checked answer.</p>"
                elif isinstance(item, Draft):
                    pieces.append(item)
                    chat[-1]["content"] = head + (DRAFT_LABEL + "".join(pieces) + STREAM_CURSOR if item.likely
                                                  else writing("".join(pieces), shown))
                    shown = shown or item.likely
                yield chat, history, panel, keep, keep, keep, keep, keep, *unchanged
        except ValueError as e:  # the request itself, e.g. an empty library or a document deleted meanwhile
            chat[-1]["content"] = f"⚠ {str(e)[0].upper()}{str(e)[1:]}."
            yield chat, history, "", keep, keep, keep, keep, keep, *unchanged
            return
        except AuditError as e:  # the checked answer is not shown: it could not be recorded
            chat[-1]["content"] = f"⚠ Not answered: the audit trail could not record this answer ({e})."
            yield chat, history, "", keep, keep, keep, keep, keep, *unchanged
            return
        assert answer is not None
        message = len(chat) - 1
        chat[-1]["content"] = answer_markdown(answer, message, previous)
        history = list(history or []) + [[question, answer.answer]]
        cited = {**(cited or {}), message: cards_of(answer)}
        if kept is not None and kept.turn is not None:
            turn_at = {**(turn_at or {}), message: kept.turn.id}
            saved = (conversation, kept.turn.id, turn_at,
                     gr.update(choices=self.conversation_choices(user), value=conversation),
                     gr.update(visible=True), "", title_of(question) if new else keep, keep)
        else:  # recorded in the audit trail, but the conversation store could not take it
            why = kept.error if kept is not None else "unknown"
            saved = (keep, keep, keep, keep, gr.update(visible=False),
                     f"⚠ This answer could not be saved in the conversation ({why}).", keep, keep)
        # The question box was emptied when this question started; what was typed since is the next question.
        yield chat, history, sources_html(answer, message), keep, keep, keep, cited, keep, *saved

    def open_source(self, picked: str | None, cited: dict, request: gr.Request):
        """Show the source of the [n] link clicked: its PDF page with the span highlighted, or the passage text with
        it marked."""
        user = self.services.authorize(request, "chat")
        hidden = gr.update(visible=False, value=None)
        found = CITE_PICKED.match(picked or "")
        if not found:
            return "", hidden, hidden
        message, n = int(found.group(1)), int(found.group(2))
        cards = (cited or {}).get(message) or (cited or {}).get(str(message)) or []
        cited_one = next((Citation(**c) for c in cards if int(c["n"]) == n), None)
        if cited_one is None:  # in place, not an error: an error would mark the panel with a red badge
            log.info("source %s of message %s not shown: not an answer on screen", n, message)
            return "⚠ That source belongs to an answer no longer on screen; ask again to open it.", hidden, hidden
        in_force = self.services.library.catalog.get(cited_one.document_id) if not cited_one.version else None
        if in_force is not None:  # a saved answer's nearest source keeps no version: the one in force is shown
            cited_one = replace(cited_one, version=in_force.version, file=in_force.file_name)
        try:
            view = view_citation(self.services, user, cited_one)
        except SourceViewError as e:
            log.info("source %s of %s not shown: %s", cited_one.n, cited_one.document_id, e)
            return f"⚠ This source cannot be shown: {e}.", hidden, hidden
        caption = (f"**[{cited_one.n}] {view.title}** — {view.where}  \n`{view.file}`, comply version "
                   f"{cited_one.version}")
        if not view.highlighted:
            caption += "  \n_The quoted passage could not be located on the page; the whole page is shown._"
        if view.image is not None:
            return caption, gr.update(visible=True, value=view.image), hidden
        return caption, hidden, gr.update(visible=True, value=view.html)

    def new_conversation(self, request: gr.Request):
        """Clear the conversation, so the next question starts a new one without context."""
        self.services.authorize(request, "chat")
        return self._cleared()

    @staticmethod
    def _cleared(**changed) -> tuple:
        """The outputs of an empty conversation (the `cleared` list of build), with some of them `changed`."""
        hidden = gr.update(visible=False, value=None)
        outputs = dict(chat=[], history=[], sources=SOURCES_HINT, caption="", image=hidden, text=hidden, cited={},
                       conversation=None, last_turn=None, turn_at={}, conversation_list=gr.update(value=None),
                       feedback_row=gr.update(visible=False), feedback_status="", title="")
        assert set(changed) <= set(outputs), changed
        return tuple({**outputs, **changed}.values())

    def open_conversation(self, conversation_id: str | None, request: gr.Request):
        """Reopen one of the user's conversations: its turns in the chat (their [n] links open their sources), the
        last answer's sources and feedback."""
        user = self.services.authorize(request, "chat")
        if not conversation_id:
            return (*self._cleared(), "")
        try:
            conversation = self.services.conversations.get(user, conversation_id)
        except ConversationError as e:
            gr.Warning(f"This conversation cannot be opened: {e}.")
            return (*self._cleared(conversation_list=gr.update(choices=self.conversation_choices(user), value=None)),
                    "")
        chat, history, cited, answer = [], [], {}, None
        for turn in conversation.turns:
            answer = Answer.from_record(turn.record)
            previous = searched_with(turn.question, history)
            chat += [{"role": "user", "content": turn.question},
                     {"role": "assistant", "content": answer_markdown(answer, len(chat) + 1, previous)}]
            cited[len(chat) - 1] = cards_of(answer)
            history.append([turn.question, answer.answer])
        last = conversation.turns[-1] if conversation.turns else None
        if answer is None or last is None:
            return (*self._cleared(conversation=conversation.id, conversation_list=gr.update(),
                                   title=conversation.title), "")
        rated = f"You rated this answer {VERDICT_WORDS[last.verdict]}." if last.verdict else ""
        feedback = [{"up": "Like", "down": "Dislike"}.get(t.verdict) for t in conversation.turns]
        return (*self._cleared(chat=gr.update(value=chat, feedback_value=feedback), history=history,
                               sources=sources_html(answer, len(chat) - 1), cited=cited, conversation=conversation.id,
                               last_turn=last.id, turn_at={2 * i + 1: t.id for i, t in enumerate(conversation.turns)},
                               conversation_list=gr.update(), feedback_row=gr.update(visible=True),
                               feedback_status=rated, title=conversation.title), last.comment or "")

    def rename(self, conversation_id: str | None, title: str, request: gr.Request):
        """Give the conversation on screen a new title (audited)."""
        user = self.services.authorize(request, "chat")
        if not conversation_id:
            return gr.update(), "Ask a question first: a conversation is saved with its first answer."
        try:
            with audit_shown():
                renamed = rename_conversation(self.services, user, conversation_id, title)
        except ConversationError as e:
            return gr.update(), f"Not renamed: {e}."
        return gr.update(choices=self.conversation_choices(user), value=renamed.id), f"Renamed to “{renamed.title}”."

    def delete(self, conversation_id: str | None, confirm: bool, request: gr.Request):
        """Delete the conversation on screen for good, once the box is ticked (audited)."""
        user = self.services.authorize(request, "chat")
        nothing = (*(gr.update(),) * len(self._cleared()), gr.update())
        if not conversation_id:
            return *nothing, "There is no saved conversation on screen to delete."
        if not confirm:
            return *nothing, "Tick “Yes, delete this conversation for good” first."
        try:
            with audit_shown():
                gone = delete_conversation(self.services, user, conversation_id)
        except ConversationError as e:
            return *nothing, f"Not deleted: {e}."
        cleared = self._cleared(conversation_list=gr.update(choices=self.conversation_choices(user), value=None))
        return *cleared, False, f"Deleted “{gone.title}”."

    def export(self, conversation_id: str | None, request: gr.Request):
        """The conversation on screen as a Markdown and a JSON file with its answers' citations (each audited)."""
        user = self.services.authorize(request, "chat")
        if not conversation_id:
            return gr.update(visible=False), "Ask a question first: a conversation is saved with its first answer."
        folder = Path(tempfile.mkdtemp(prefix="comply-conversation-"))
        files = []
        try:
            for fmt in ("md", "json"):
                with audit_shown():  # recorded before the file is handed out
                    _, text = export_conversation(self.services, user, conversation_id, fmt)
                path = folder / f"conversation-{conversation_id}.{fmt}"
                path.write_text(text, encoding="utf-8")
                files.append(str(path))
        except ConversationError as e:
            return gr.update(visible=False), f"Not exported: {e}."
        return gr.update(value=files, visible=True), "Exported as Markdown and JSON."

    def rate_up(self, turn_id: str | None, comment: str, request: gr.Request) -> str:
        """👍 on the last answer, with the comment if one was typed."""
        return self._rate("up", turn_id, comment, request)

    def rate_down(self, turn_id: str | None, comment: str, request: gr.Request) -> str:
        """👎 on the last answer, with the comment if one was typed."""
        return self._rate("down", turn_id, comment, request)

    def rate_message(self, turn_at: dict, comment: str, like: gr.LikeData, request: gr.Request) -> str:
        """The chat's own thumbs under any saved answer, with the comment if one was typed."""
        index = like.index if isinstance(like.index, int) else like.index[0]
        if like.liked not in (True, False):  # a thumb clicked again: feedback is replaced, not taken back
            return "Feedback stays as given; click the other thumb to change it."
        return self._rate("up" if like.liked else "down", (turn_at or {}).get(index), comment, request)

    def _rate(self, verdict: str, turn_id: str | None, comment: str, request: gr.Request) -> str:
        user = self.services.authorize(request, "chat")
        if not turn_id:
            return "There is no saved answer on screen to rate."
        try:
            with audit_shown():
                turn = rate_answer(self.services, user, turn_id, verdict, comment)
        except ConversationError as e:
            return f"Not recorded: {e}."
        note = " with your comment" if turn.comment else ""
        return f"Thank you: recorded {VERDICT_WORDS[verdict]}{note}. Clicking again replaces it."
