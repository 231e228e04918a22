"""Users of the web UI: password hashing, roles, disabling."""

import pytest

from scpnode.schema import open_node_database
from scpnode.web.users import (
    Role, UserError, add_user, authenticate, ensure_schema, hash_password, list_users, set_disabled, set_password,
    verify_password,
)


@pytest.fixture
def db(tmp_path):
    database = open_node_database(tmp_path / "node.db")
    ensure_schema(database)
    return database


def test_scrypt_hash_is_salted_and_verifies():
    first, second = hash_password("correct horse battery"), hash_password("correct horse battery")
    assert first != second and first.startswith("scrypt$16384$8$1$")
    assert verify_password("correct horse battery", first) and verify_password("correct horse battery", second)
    assert not verify_password("correct horse batterY", first)
    assert not verify_password("x", "not a hash") and not verify_password("x", "bcrypt$1$2$3$4$5")


def test_users_roles_and_disabling(db):
    carol = add_user(db, "carol", "correct horse battery", "coordinator")
    assert carol.role is Role.COORDINATOR and not carol.is_admin
    assert add_user(db, "root", "correct horse battery", Role.ADMIN).is_admin
    stored = db.execute("select password_hash from users where username = 'carol'").fetchone()[0]
    assert "correct horse" not in stored
    with pytest.raises(UserError, match="exists already"):
        add_user(db, "CAROL", "correct horse battery", "coordinator")
    with pytest.raises(UserError, match="role must be one of"):
        add_user(db, "dave", "correct horse battery", "superuser")
    with pytest.raises(UserError, match="without spaces"):
        add_user(db, "da ve", "correct horse battery", "coordinator")

    assert authenticate(db, "carol", "correct horse battery").last_login_at
    assert authenticate(db, "carol", "wrong password!") is None
    assert authenticate(db, "nobody", "correct horse battery") is None
    set_password(db, "carol", "another long password")
    assert authenticate(db, "carol", "correct horse battery") is None
    set_disabled(db, "carol")
    assert authenticate(db, "carol", "another long password") is None
    assert [u.disabled for u in list_users(db)] == [True, False]
    with pytest.raises(UserError, match="no user"):
        set_disabled(db, "nobody")
