"""Users and roles: scrypt records, authentication, role permissions, camera scope."""
from __future__ import annotations

import pytest

from pipeline.access import users
from pipeline.access.users import AccessDenied, User
from reid_models.common import UserError
from tests.pipeline.store.test_store import sql


def test_add_list_authenticate_remove(store_path):
    u = users.add_user(store_path, "ana", "operator", "correct horse", cameras=["north"])
    assert u == User("ana", "operator", ("north",))
    users.add_user(store_path, "bo", "viewer", "battery staple")
    assert [x.name for x in users.list_users(store_path)] == ["ana", "bo"]
    assert users.authenticate(store_path, "ana", "correct horse") == u
    assert users.authenticate(store_path, "ana", "wrong password") is None
    assert users.authenticate(store_path, "nobody", "correct horse") is None
    record = sql(store_path, "SELECT password FROM users WHERE name='ana'")[0][0]
    assert record.startswith("scrypt$16384$8$1$") and "correct horse" not in record
    other = sql(store_path, "SELECT password FROM users WHERE name='bo'")[0][0]
    assert record.split("$")[4] != other.split("$")[4]  # per-user salt
    users.remove_user(store_path, "ana")
    assert users.get_user(store_path, "ana") is None
    with pytest.raises(UserError, match="no user ana"):
        users.remove_user(store_path, "ana")


def test_bad_input(store_path):
    users.add_user(store_path, "ana", "admin", "long enough")
    with pytest.raises(UserError, match="exists"):
        users.add_user(store_path, "ana", "admin", "long enough")
    with pytest.raises(UserError, match="unknown role"):
        users.add_user(store_path, "cy", "root", "long enough")
    with pytest.raises(UserError, match="too short"):
        users.add_user(store_path, "cy", "viewer", "short")
    with pytest.raises(UserError, match="unknown camera east"):
        users.add_user(store_path, "cy", "viewer", "long enough", cameras=["east"])


def test_roles_and_scope(store_path):
    viewer, operator, admin = (User("v", "viewer", None), User("o", "operator", ("north",)), User("a", "admin", None))
    assert [viewer.may(a) for a in users.ACTIONS] == [True, False, False, False, False]
    assert [operator.may(a) for a in users.ACTIONS] == [True, True, True, True, False]
    assert all(admin.may(a) for a in users.ACTIONS)
    assert operator.sees("north") and not operator.sees("south") and viewer.sees("south")
    users.add_user(store_path, "o", "operator", "long enough", cameras=["north"])
    assert users.authorize(store_path, "o", "correct", ["north"]).name == "o"
    with pytest.raises(AccessDenied, match="may not see camera south"):
        users.authorize(store_path, "o", "correct", ["north", "south"])
    with pytest.raises(AccessDenied, match="may not admin"):
        users.authorize(store_path, "o", "admin")
    with pytest.raises(AccessDenied, match="unknown user"):
        users.authorize(store_path, "ghost", "browse")
    assert users.authorize(store_path, "os:alice", "admin") is None


def test_login_is_audited_without_the_password(store_path):
    from pipeline.access import audit

    users.add_user(store_path, "ana", "viewer", "correct horse")
    assert users.login(store_path, "ana", "correct horse", source="127.0.0.1").name == "ana"
    assert users.login(store_path, "ana", "wrong horse", source="127.0.0.1") is None
    rows = audit.read(store_path)
    assert [(r.actor, r.action) for r in rows] == [("ana", "login"), ("anonymous", "login_failed")]
    assert rows[1].details == {"name": "ana", "source": "127.0.0.1"}
    assert "horse" not in str([r.details for r in rows])
