"""`comply users`, `comply audit` and `comply serve` through the real typer app, in a temporary home."""

import csv
import json

from typer.testing import CliRunner

from assistant.app.audit import AuditLog
from assistant.app.cli.main import app
from assistant.app.users import UserStore
from ingest.settings import Settings


def comply(home, *args, input=None):
    return CliRunner().invoke(app, ["--home", str(home), *args], input=input)


def test_users_commands(tmp_path):
    added = comply(tmp_path, "users", "add", "alice", "--role", "editor", "--json")
    assert added.exit_code == 0, added.output
    data = json.loads(added.output)
    assert (data["name"], data["role"]) == ("alice", "editor")
    store = UserStore(Settings(home=tmp_path).users_path)
    assert store.authenticate("alice", data["password"]).role == "editor"

    text = comply(tmp_path, "users", "add", "root", "--role", "admin", "--password-stdin", input="root-secret-9\n")
    assert text.exit_code == 0 and "root-secret-9" not in text.output
    assert store.authenticate("root", "root-secret-9").role == "admin"

    listed = json.loads(comply(tmp_path, "users", "list", "--json").output)
    assert [(u["name"], u["role"]) for u in listed] == [("alice", "editor"), ("root", "admin")]

    assert comply(tmp_path, "users", "set-role", "alice", "--role", "viewer").exit_code == 0
    assert store.get("alice").role == "viewer"

    bad = comply(tmp_path, "users", "set-role", "alice", "--role", "wizard", "--json")
    assert bad.exit_code == 1 and "unknown role" in json.loads(bad.output)["error"]
    last = comply(tmp_path, "users", "remove", "root")
    assert last.exit_code == 1 and "last admin" in last.output
    weak = comply(tmp_path, "users", "add", "bob", "--password-stdin", input="123\n")
    assert weak.exit_code == 1 and "too short" in weak.output

    reset = json.loads(comply(tmp_path, "users", "reset-password", "alice", "--json").output)
    assert store.authenticate("alice", reset["password"]) is not None

    assert comply(tmp_path, "users", "remove", "alice", "--json").exit_code == 0
    assert store.get("alice") is None

    actions = [r["action"] for r in AuditLog(Settings(home=tmp_path).audit_path).records()]
    assert actions == ["user.add", "user.add", "user.list", "user.set_role", "user.reset_password", "user.remove"]


def test_audit_export_verify_and_stats(tmp_path):
    log = AuditLog(Settings(home=tmp_path).audit_path)
    for i in range(3):
        log.append("alice", "answer", question=f"q{i}", abstained=i == 2, adapter=None,
                   sentences=[{"text": "s", "supported": i != 1, "support_score": 0.5, "citations": [1]}],
                   timings={"total_ms": 100.0 * (i + 1)})

    ok = comply(tmp_path, "audit", "verify", "--json")
    assert ok.exit_code == 0 and json.loads(ok.output)["records"] == 3

    out = tmp_path / "export.csv"
    exported = comply(tmp_path, "audit", "export", "--format", "csv", "--out", str(out), "--json")
    assert exported.exit_code == 0, exported.output
    assert json.loads(exported.output)["records"] == 4  # the answers and the check
    with open(out, newline="") as f:
        assert [(row["action"], row["question"]) for row in csv.DictReader(f)] == \
            [("answer", "q0"), ("answer", "q1"), ("answer", "q2"), ("audit.verify", "")]
    jsonl = tmp_path / "export.jsonl"
    assert comply(tmp_path, "audit", "export", "--out", str(jsonl), "--since", "2000-01-01").exit_code == 0
    exported_actions = [json.loads(line)["action"] for line in jsonl.read_text().splitlines()]
    # the check and the first export are on the trail
    assert exported_actions == ["answer", "answer", "answer", "audit.verify", "audit.export"]
    assert comply(tmp_path, "audit", "export", "--format", "xml").exit_code == 1
    assert log.records()[-1]["action"] == "audit.export"

    plot = tmp_path / "daily.png"
    stats = comply(tmp_path, "audit", "stats", "--json", "--plot", str(plot))
    assert stats.exit_code == 0, stats.output
    (day,) = json.loads(stats.output)["days"]
    assert (day["questions"], day["latency_p95_ms"], day["adapters"]) == (3, 300.0, ["base"])
    assert plot.read_bytes()[:4] == b"\x89PNG"
    assert "questions" in comply(tmp_path, "audit", "stats").output

    lines = log.path.read_bytes().splitlines(keepends=True)
    lines[1] = lines[1].replace(b"q1", b"q9")
    log.path.write_bytes(b"".join(lines))
    broken = comply(tmp_path, "audit", "verify")
    assert broken.exit_code == 1 and "seq 2" in broken.output
    assert json.loads(comply(tmp_path, "audit", "verify", "--json").output)["first_bad_seq"] == 2


def test_serve_is_registered():
    result = CliRunner().invoke(app, ["serve", "--help"])
    assert result.exit_code == 0 and "--port" in result.output and "--host" in result.output


def test_serve_refuses_a_weak_first_admin_password_with_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("COMPLY_ADMIN_PASSWORD", "abc")
    result = comply(tmp_path / "home", "serve", "--port", "7999")
    assert result.exit_code == 1
    assert "cannot create the first admin" in result.output and "8 characters" in result.output
    assert UserStore(Settings(home=tmp_path / "home").users_path).list() == []
    monkeypatch.setenv("COMPLY_ADMIN_PASSWORD", "")  # empty means unset: a password would be generated
    assert Settings().admin_password is None


def test_every_audited_command_refuses_when_the_trail_cannot_record_it(tmp_path):
    """A cut trail (an interrupted write): each command that the trail records does nothing and says why."""
    store = UserStore(Settings(home=tmp_path).users_path)
    assert comply(tmp_path, "users", "add", "root", "--role", "admin").exit_code == 0
    store.add("alice", "editor", "alice-password-1")
    trail = Settings(home=tmp_path).audit_path
    with open(trail, "ab") as f:
        f.write(b'{"seq":2,"ti')
    before = trail.read_bytes()
    policy = tmp_path / "policy.txt"
    policy.write_text("Records are kept for five years.\n")
    for command in (["users", "add", "bob"], ["users", "remove", "alice"], ["users", "set-role", "alice", "--role",
                    "admin"], ["users", "reset-password", "alice"], ["ingest", str(policy)],
                    ["docs", "delete", "policy"], ["ask", "How long are records kept?"],
                    ["adapters", "activate", "x"], ["adapters", "rollback"]):
        result = comply(tmp_path, *command, "--json")
        assert result.exit_code == 1, (command, result.output)
        error = json.loads(result.output)["error"]
        assert error.startswith("Not done") and "incomplete" in error, (command, error)
    assert [(u.name, u.role) for u in store.list()] == [("alice", "editor"), ("root", "admin")]
    assert store.authenticate("alice", "alice-password-1") is not None
    assert trail.read_bytes() == before and not (tmp_path / "catalog.sqlite3").exists()


def test_audit_export_is_refused_when_the_trail_cannot_record_it(tmp_path):
    log = AuditLog(Settings(home=tmp_path).audit_path)
    log.append("alice", "answer", question="q0")
    with open(log.path, "ab") as f:
        f.write(b'{"seq":2,"ti')  # an interrupted write: no record can follow it
    out = tmp_path / "export.jsonl"
    result = comply(tmp_path, "audit", "export", "--out", str(out), "--json")
    assert result.exit_code == 1
    error = json.loads(result.output)["error"]
    assert error.startswith("Not done: 'audit.export'") and "incomplete" in error, error
    assert not out.exists()  # no export that the trail does not show


def test_an_export_the_trail_fails_to_record_in_between_is_deleted_again(tmp_path, monkeypatch):
    """The trail can record when the export starts, and cannot when it is done (another writer crashed meanwhile):
    the export is not left behind unrecorded."""
    log = AuditLog(Settings(home=tmp_path).audit_path)
    log.append("alice", "answer", question="q0")
    real_export = AuditLog.export

    def export_then_crash_another_writer(self, dest, *args, **kwargs):
        written = real_export(self, dest, *args, **kwargs)
        with open(self.path, "ab") as f:
            f.write(b'{"seq":2,"ti')
        return written

    monkeypatch.setattr(AuditLog, "export", export_then_crash_another_writer)
    out = tmp_path / "export.jsonl"
    result = comply(tmp_path, "audit", "export", "--out", str(out), "--json")
    assert result.exit_code == 1
    error = json.loads(result.output)["error"]
    assert error.startswith("Not exported: the audit trail could not record the export") and "deleted" in error
    assert not out.exists()
