import pytest

from common.settings import MissingSecretError, load_secrets, write_first_run_dotenv

LONG = "k" * 40


def test_environment_wins_over_dotenv(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text(f"TOKEN_SECRET_KEY={'d' * 40}\nAPI_KEY=fromfile\n")
    secrets = load_secrets({"API_KEY": "fromenv"}, env_file)
    assert secrets.api_key == "fromenv" and secrets.token_secret_key == "d" * 40
    assert "fromenv" not in repr(secrets)


def test_missing_secrets_are_named(tmp_path):
    with pytest.raises(MissingSecretError, match="missing TOKEN_SECRET_KEY, API_KEY"):
        load_secrets({}, tmp_path / ".env")
    with pytest.raises(MissingSecretError, match="missing API_KEY"):
        load_secrets({"TOKEN_SECRET_KEY": LONG}, None)
    with pytest.raises(MissingSecretError, match="at least 32"):
        load_secrets({"TOKEN_SECRET_KEY": "short", "API_KEY": "x"}, None)


def test_first_run_dotenv_is_written_once(tmp_path):
    path = tmp_path / ".env"
    assert write_first_run_dotenv(path)
    first = path.read_text()
    assert not write_first_run_dotenv(path) and path.read_text() == first
    assert load_secrets({}, path).api_key
    assert oct(path.stat().st_mode & 0o777) == "0o600"
