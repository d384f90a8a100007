"""Secrets are removed before tokenising; ordinary shell code is left exactly as it was."""

from __future__ import annotations

import pytest
from support import FIXTURE_SCRIPTS

from bashlsp.model.redact import PLACEHOLDER, is_secret_name, redact

# (line with a planted secret, the secret, the kind reported)
PLANTED = [
    ("export AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE", "AKIAIOSFODNN7EXAMPLE", "aws access key id"),
    (
        "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "password/secret in config",
    ),
    ("GH=ghp_16C7e42F292c6912E7710c838347Ae178B4a", "ghp_16C7e42F292c6912E7710c838347Ae178B4a", "github token"),
    (
        "git push https://github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz@github.com/x/y",
        "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz",
        "github token",
    ),
    (
        "SLACK=xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
        "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
        "slack token",
    ),
    (
        'curl "https://maps.googleapis.com/api?key=AIzaSyA1234567890abcdefghijklmnopqrstuv"',
        "AIzaSyA1234567890abcdefghijklmnopqrstuv",
        "google api key",
    ),
    ('STRIPE="sk_live_4eC39HqLyjWDarjtT1zdp7dc"', "sk_live_4eC39HqLyjWDarjtT1zdp7dc", "stripe key"),
    (
        'curl -H "X: eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U" u',
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
        "jwt",
    ),
    ("curl -H 'Authorization: Bearer 0123456789abcdefXYZ' https://api", "0123456789abcdefXYZ", "authorization header"),
    ("password=hunter2", "hunter2", "password/secret assignment"),
    ("DB_PASSWORD='correct horse'", "correct horse", "password/secret assignment"),
    ('export MYSQL_ROOT_PASSWORD="s3cr3t!"', "s3cr3t!", "password/secret assignment"),
    ("local db_pass=Zq9xLm", "Zq9xLm", "password/secret assignment"),
    ("dbPassword=xyz789 ./run", "xyz789", "password/secret assignment"),
    ("API_KEY=abcdef123456", "abcdef123456", "password/secret assignment"),
    ("readonly SECRET=topsecretvalue", "topsecretvalue", "password/secret assignment"),
    ("mysql -uroot -p'Sup3r$ecret' mydb", "Sup3r$ecret", "mysql password"),
    ("mysqldump -u admin -pPl41nPass db > dump.sql", "Pl41nPass", "mysql password"),
    ("./deploy --password hunter2 --verbose", "hunter2", "password/secret option"),
    ("./deploy --api-key=abcdef123456", "abcdef123456", "password/secret option"),
    ("keytool -list -storepass changeit", "changeit", "password/secret option"),
    ("psql postgres://admin:Passw0rd@db.example.com/app", "Passw0rd", "password in url"),
    ("curl -u alice:wonderland https://example.com", "wonderland", "password in curl -u"),
    ("sshpass -p 'rootpw' ssh root@host", "rootpw", "sshpass password"),
    ("  secret: mysecretvalue", "mysecretvalue", "password/secret in config"),
    ('  "client_secret": "abc123def",', "abc123def", "password/secret in config"),
    ("openssl rsa -in key.pem -passin pass:foobar -out x", "foobar", "openssl password"),
]

PRIVATE_KEY = """cat > ~/.ssh/id_ed25519 <<'EOF'
-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW
QyNTUxOQAAACBvZXJ0aGlzaXNub3RhcmVhbGtleWJ1dGl0bG9va3NsaWtlb25l
-----END OPENSSH PRIVATE KEY-----
EOF
chmod 600 ~/.ssh/id_ed25519
"""

# Ordinary code that names secrets without holding one, and code that merely looks similar.
ORDINARY = [
    'password="$1"',
    "token=$(cat ~/.token)",
    'API_KEY="${API_KEY:-}"',
    "PWD=/tmp",
    "OLDPWD=/x",
    "bypass=1",
    "TOKEN_FILE=/etc/token",
    'read -s -p "Password: " password',
    'if [ "$password" = "" ]; then exit 1; fi',
    "mkdir -p /tmp/x",
    "pg_dump --no-password -h host db",
    "ssh -p 22 user@host",
    "docker run -u 1000:1000 img",
    "mysql -p mydb",
    'echo "${TOKEN:?missing}"',
    "local token",
    "key=value",
    'for key in "${!map[@]}"; do echo "$key"; done',
    'url="https://example.com:8080/path"',
    "scp file user@host:/tmp/",
    'curl -H "Authorization: Bearer $TOKEN" https://api',
    'password_prompt="Enter it"',
    "export GOOGLE_APPLICATION_CREDENTIALS=/path/key.json",
    "git clone https://github.com/user/repo.git",
    "tar -czf backup.tar.gz --exclude=.git .",
    "printf '%s\\n' \"$@\"",
    "grep -rn 'password' /etc/app.conf",
    'pass "$@"',
    "systemctl --no-ask-password daemon-reload",
    "NO_PASSWORD=1",
]


@pytest.mark.parametrize("line,secret,kind", PLANTED, ids=[p[2] + ":" + p[0][:24] for p in PLANTED])
def test_planted_secret_is_removed(line, secret, kind):
    text = f"#!/bin/bash\n{line}\necho done\n"
    redacted, found = redact(text)
    assert secret not in redacted
    assert PLACEHOLDER in redacted
    assert [r.kind for r in found] == [kind]
    # The report says where, never what.
    assert found[0].line == 2
    assert text.splitlines()[1][found[0].column - 1 :].startswith(secret)
    assert found[0].length == len(secret)
    assert secret not in found[0].describe("x.sh")
    # Everything around the secret is kept.
    assert redacted.startswith("#!/bin/bash\n") and redacted.endswith("\necho done\n")


def test_private_key_block_removed_keeping_its_frame():
    redacted, found = redact(PRIVATE_KEY)
    assert [r.kind for r in found] == ["private key"]
    assert "b3BlbnNzaC1rZXkt" not in redacted and "QyNTUxOQ" not in redacted
    assert "-----BEGIN OPENSSH PRIVATE KEY-----\n" in redacted
    assert "-----END OPENSSH PRIVATE KEY-----\nEOF\nchmod 600" in redacted


def test_unterminated_private_key_is_removed_to_the_end():
    text = "echo start\n-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7bq\nabcdef\n"
    redacted, found = redact(text)
    assert "MIIEowIBAAKCAQEA7bq" not in redacted and "abcdef" not in redacted
    assert redacted.startswith("echo start\n") and found[0].line == 2


@pytest.mark.parametrize("line", ORDINARY)
def test_ordinary_code_untouched(line):
    assert redact(line + "\n") == (line + "\n", [])


def test_fixture_scripts_untouched():
    for path in FIXTURE_SCRIPTS:
        text = path.read_text()
        assert redact(text) == (text, []), path.name


def test_several_secrets_reported_in_order_with_positions():
    text = "A=1\nexport GITHUB_TOKEN=ghp_16C7e42F292c6912E7710c838347Ae178B4a\nmysql -pX1y2Z3 -e 'select 1'\n"
    redacted, found = redact(text)
    assert [(r.line, r.column) for r in found] == [(2, 21), (3, 9)]
    assert redacted == "A=1\nexport GITHUB_TOKEN=REDACTED\nmysql -pREDACTED -e 'select 1'\n"


@pytest.mark.parametrize(
    "name,secret",
    [
        ("PASSWORD", True),
        ("db_pass", True),
        ("GITHUB_TOKEN", True),
        ("dbPassword", True),
        ("APIKey", True),
        ("aws_secret_access_key", True),
        ("PWD", False),
        ("OLDPWD", False),
        ("bypass", False),
        ("TOKEN_FILE", False),
        ("key", False),
        ("password_prompt", False),
    ],
)
def test_secret_names(name, secret):
    assert is_secret_name(name) is secret
