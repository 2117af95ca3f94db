"""Settings: a bad value anywhere (environment, config file, flag) is a clear error naming the setting, also at the
command line, where it must not be a traceback."""

import json

import pytest
from typer.testing import CliRunner

from assistant.app.cli.main import app
from ingest.settings import SettingsError, load_settings


def test_environment_values_are_type_and_range_checked_naming_the_variable(monkeypatch, tmp_path):
    monkeypatch.setenv("COMPLY_CHUNK_TOKENS", "abc")
    with pytest.raises(SettingsError, match=r"chunk_tokens \(COMPLY_CHUNK_TOKENS\) = 'abc'"):
        load_settings(home=tmp_path)
    monkeypatch.setenv("COMPLY_CHUNK_TOKENS", "0")
    with pytest.raises(SettingsError, match="greater than or equal to 16"):
        load_settings(home=tmp_path)
    monkeypatch.delenv("COMPLY_CHUNK_TOKENS")
    monkeypatch.setenv("COMPLY_TOP_K", "-1")
    with pytest.raises(SettingsError, match="top_k"):
        load_settings(home=tmp_path)


def test_config_file_problems_name_the_file(tmp_path):
    missing, broken, typo = tmp_path / "missing.toml", tmp_path / "broken.toml", tmp_path / "typo.toml"
    broken.write_text("top_k = [\n")
    typo.write_text("[comply]\nchunk_tokns = 100\n")
    for path, message in ((missing, "does not exist"), (broken, "cannot be read"), (typo, "unknown setting.*chunk_tokns")):
        with pytest.raises(SettingsError, match=message):
            load_settings(home=tmp_path, config_file=path)
    good = tmp_path / "good.toml"
    good.write_text("[comply]\ntop_k = 5\n")
    assert load_settings(home=tmp_path, config_file=good).top_k == 5


def test_a_home_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "home").write_text("")
    with pytest.raises(SettingsError, match="is a file"):
        load_settings(home=tmp_path / "home")


def test_the_cli_reports_a_bad_setting_as_an_error_not_a_traceback(tmp_path):
    result = CliRunner().invoke(app, ["--home", str(tmp_path), "docs", "list", "--json"],
                                env={"COMPLY_MAX_FILE_MB": "lots"})
    assert result.exit_code == 1
    assert "max_file_mb" in json.loads(result.stdout)["error"]
