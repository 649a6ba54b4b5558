"""No page or paragraph promises what is not built: delivery, the intake of bounces and
complaints, and webhooks are built now; PROMISES lists the claims that are still not true."""
import re
from pathlib import Path

import pytest
from django.core.management import call_command
from django.test import Client

from credentials import services

ROOT = Path(__file__).resolve().parents[2]
PROMISES = [
    r"\bsuppression list\b[^.]*\b(keeps|stops)\b",
]


def promises(text: str) -> list[str]:
    text = re.sub(r"\s+", " ", text)
    return [p for p in PROMISES if re.search(p, text, re.I)]


def test_the_check_sees_each_promise():
    assert promises("the suppression list stops mail to them") == [PROMISES[0]]
    assert promises("the suppression list is described here.") == []


def test_the_readme_and_docs_promise_nothing_unbuilt():
    readme = (ROOT / "README.md").read_text()
    docs = " ".join(p.read_text() for p in (ROOT / "docs").glob("*.md"))
    assert promises(docs) == []
    opening = readme.split("**Status", 1)[0]
    assert "queues it" in opening and "recipients' mail servers" in opening
    assert promises(opening) == []
    assert promises(readme) == []


@pytest.mark.django_db
def test_no_dashboard_or_admin_page_promises_what_is_not_built(admin_user):
    login, _ = services.create_login(admin_user, features=["bouncetracking"])
    client = Client()
    client.force_login(admin_user)
    pages = {url: client.get(url) for url in [
        "/", "/logins/new/", f"/logins/{login.pk}/edit/", "/connect/", "/preview/",
        f"/admin/credentials/login/{login.pk}/change/"]}
    pages["preview result"] = client.post("/preview/", {
        "login": login.pk, "rcpt": "a@example.org", "message": "Subject: x\n\nhello\n"})
    assert b'id="rendered"' in pages["preview result"].content
    found = {name: promises(r.content.decode()) for name, r in pages.items()}
    assert {name: p for name, p in found.items() if p} == {}
    assert all(r.status_code == 200 for r in pages.values())


def test_no_command_help_promises_what_is_not_built(capsys):
    for command in ["render", "runsmtp", "mailq", "createlogin"]:
        with pytest.raises(SystemExit):
            call_command(command, "--help")
        out = capsys.readouterr().out
        assert "usage:" in out
        assert promises(out) == [], command


def test_no_file_cites_a_path_on_the_build_machine():
    # Docs and docstrings name the fact (an upstream issue, a README section), not a file that
    # exists only on one machine.
    machine_path = "/" + "work/"
    skip = {".venv", ".git", "var", "node_modules"}
    found = [str(path.relative_to(ROOT)) for path in ROOT.rglob("*")
             if path.suffix in {".py", ".md", ".html", ".txt", ".toml", ".js", ".css"}
             and not skip & set(path.relative_to(ROOT).parts)
             and machine_path in path.read_text(errors="replace")]
    assert found == []
