"""Management commands: createlogin, logins, ensureadmin, as provisioning scripts call them."""
import io
import json

import pytest
from django.contrib.auth import authenticate as dashboard_authenticate
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from credentials import services
from credentials.models import FEATURE_NAMES, AuditEntry, Login

pytestmark = pytest.mark.django_db


def run(*args) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


# --- createlogin -----------------------------------------------------------------------------

def test_createlogin_prints_a_password_that_works(alice):
    out, err = run("createlogin", "--owner", "alice", "--features", "clicktracking,inlinecss",
                   "--description", "provisioned")
    fields = dict(line.split(": ", 1) for line in out.strip().splitlines())
    login = Login.objects.get(owner=alice)
    assert fields["username"] == login.username
    assert len(fields["password"]) >= 24
    assert services.authenticate(login.username, fields["password"]) == login
    assert fields["features"] == "clicktracking, inlinecss"
    assert login.description == "provisioned"
    assert "shown only now" in err
    assert login.password_hash not in out + err and "argon2" not in out + err
    entry = AuditEntry.objects.get()
    assert (entry.action, entry.actor, entry.owner_name) == ("created", alice, "alice")


def test_createlogin_json_is_one_object_for_scripts(alice):
    out, _ = run("createlogin", "--owner", "alice", "--features", "bouncetracking", "--json")
    data = json.loads(out)
    assert set(data) == {"username", "password", "owner", "features", "description"}
    assert (data["owner"], data["features"], data["description"]) == (
        "alice", ["bouncetracking"], "")
    login = Login.objects.get(username=data["username"])
    assert services.authenticate(data["username"], data["password"]) == login
    assert "argon2" not in out


def test_createlogin_without_features_has_all_off(alice):
    out, _ = run("createlogin", "--owner", "alice")
    assert "features: (none)" in out
    assert Login.objects.get().enabled_features() == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--owner", "nobody"], "no user named 'nobody'"),
        (["--owner", ""], "no user named ''"),
        (["--owner", "alice", "--features", "clicktracking,teleport"],
         "unknown feature(s): teleport"),
        (["--owner", "alice", "--description", "x" * 201],
         "description has 201 characters; at most 200 are allowed"),
    ],
)
def test_createlogin_refuses_bad_input_with_a_command_error(alice, args, message):
    with pytest.raises(CommandError) as exc:
        run("createlogin", *args)
    assert message in str(exc.value)
    assert not Login.objects.exists()
    assert not AuditEntry.objects.exists()


def test_createlogin_takes_a_description_of_exactly_the_limit(alice):
    run("createlogin", "--owner", "alice", "--description", "y" * 200)
    assert Login.objects.get().description == "y" * 200


def test_services_refuse_over_long_descriptions_for_every_caller(alice, alice_login):
    with pytest.raises(ValueError, match="at most 200"):
        services.create_login(alice, description="z" * 201)
    with pytest.raises(ValueError, match="at most 200"):
        services.update_login(alice_login, actor=alice, description="z" * 201)
    alice_login.refresh_from_db()
    assert alice_login.description == "shop"


# --- logins ----------------------------------------------------------------------------------

@pytest.fixture
def fleet(alice, bob):
    a, _ = services.create_login(alice, features=["clicktracking", "inlinecss"], description="shop")
    b, _ = services.create_login(bob, features=["openstracking"], description="bob's app")
    services.set_enabled(b, False, actor=bob)
    return a, Login.objects.get(pk=b.pk)


def test_logins_lists_every_login_with_its_features(fleet):
    a, b = fleet
    out, _ = run("logins")
    lines = [line.split("\t") for line in out.strip().splitlines()]
    assert lines[0] == ["username", "owner", "enabled", *FEATURE_NAMES, "last used",
                        "description"]
    rows = {cells[0]: cells for cells in lines[1:]}
    assert rows[a.username] == [a.username, "alice", "yes", "on", "-", "-", "-", "on", "never",
                                "shop"]
    assert rows[b.username] == [b.username, "bob", "no", "-", "on", "-", "-", "-", "never",
                                "bob's app"]
    for login in fleet:
        assert login.password_hash not in out
    assert "argon2" not in out


def test_logins_json_and_owner_filter(fleet):
    a, b = fleet
    out, _ = run("logins", "--json", "--owner", "alice")
    data = json.loads(out)
    assert [row["username"] for row in data] == [a.username]
    assert data[0]["features"] == ["clicktracking", "inlinecss"]
    assert (data[0]["owner"], data[0]["enabled"], data[0]["last_used"]) == ("alice", True, None)
    assert not any("hash" in key or "password" in key for key in data[0])
    everyone = run("logins", "--json")[0]
    assert {row["username"] for row in json.loads(everyone)} == {a.username, b.username}
    assert "argon2" not in everyone and b.password_hash not in everyone


def test_logins_of_an_owner_without_logins_is_just_the_header(fleet, django_user_model):
    django_user_model.objects.create_user("carol")
    out, _ = run("logins", "--owner", "carol")
    assert out.strip().splitlines() == ["\t".join(["username", "owner", "enabled", *FEATURE_NAMES,
                                                   "last used", "description"])]
    assert json.loads(run("logins", "--owner", "carol", "--json")[0]) == []


# --- ensureadmin -----------------------------------------------------------------------------

def test_ensureadmin_creates_a_superuser_once_with_a_working_password():
    User = get_user_model()
    out, _ = run("ensureadmin")
    password = out.split("password: ", 1)[1].strip()
    assert "username: admin" in out
    assert len(password) >= 24
    admin = User.objects.get(username="admin")
    assert admin.is_superuser and admin.is_staff
    assert dashboard_authenticate(username="admin", password=password) == admin
    assert admin.password.startswith("argon2")  # the tests' quick argon2 hasher

    again, _ = run("ensureadmin")
    assert User.objects.count() == 1
    assert password not in again and "password: " not in again
    assert "exists already (admin)" in again
    assert "python manage.py changepassword admin" in again
    assert dashboard_authenticate(username="admin", password=password) == admin


def test_ensureadmin_names_the_existing_superuser_for_recovery(admin_user):
    out, _ = run("ensureadmin", "--username", "root")
    assert not get_user_model().objects.filter(username="root").exists()
    assert f"changepassword {admin_user.username}" in out
