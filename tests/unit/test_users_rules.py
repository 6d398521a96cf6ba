"""The users service's pure rules: usernames, passwords, password hashes."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rideshare.errors import BadRequest
from rideshare.users import rules

SHA1 = hashlib.sha1(b"secret").hexdigest()


@pytest.mark.parametrize(
    "name",
    ["a", "Alice", "alice", "x" * 256, "a.b", "...", ".a", "名前", "o'brien; DROP TABLE users;--",
     "a b", "tab?", "%2F", "\u200b"],
)
def test_good_usernames(name: str) -> None:
    assert rules.check_username(name) == name


@pytest.mark.parametrize(
    "name",
    ["", ".", "..", "a/b", "/", "x" * 257, "a\x00b", "a\nb", "\t", "a\x7f", "\x85", 5, None,
     ["a"], {"a": 1}, True],
)
def test_bad_usernames(name: object) -> None:
    with pytest.raises(BadRequest):
        rules.check_username(name)


def test_usernames_are_case_sensitive_values() -> None:
    assert rules.check_username("Bob") != rules.check_username("bob")


@pytest.mark.parametrize("password", [SHA1, SHA1.upper(), "0" * 40, "aBcDeF0123" * 4])
def test_good_passwords(password: str) -> None:
    assert rules.check_password(password) == password


@pytest.mark.parametrize(
    "password",
    ["", SHA1[:-1], SHA1 + "0", "g" * 40, " " + SHA1[1:], SHA1[:-1] + "\n", "٠" * 40, 123,
     None, ["a" * 40], "０" * 40],
)
def test_bad_passwords(password: object) -> None:
    with pytest.raises(BadRequest):
        rules.check_password(password)


def test_hash_is_salted_and_never_the_digest() -> None:
    first, second = rules.hash_password(SHA1), rules.hash_password(SHA1)
    assert first != second  # a random salt each time
    assert SHA1 not in first and SHA1.upper() not in first
    scheme, iterations, salt, digest = first.split("$")
    assert scheme == "pbkdf2_sha256" and int(iterations) == rules.ITERATIONS
    assert len(bytes.fromhex(salt)) == rules.SALT_BYTES and len(bytes.fromhex(digest)) == 32


def test_verify_accepts_either_case_and_refuses_others() -> None:
    stored = rules.hash_password(SHA1)
    assert rules.verify_password(SHA1, stored)
    assert rules.verify_password(SHA1.upper(), stored)
    assert not rules.verify_password("0" * 40, stored)
    assert not rules.verify_password(SHA1, "garbage")
    assert not rules.verify_password(SHA1, "md5$1$00$00")


@given(st.binary(max_size=64))
def test_hash_round_trip(secret: bytes) -> None:
    digest = hashlib.sha1(secret).hexdigest()
    assert rules.verify_password(digest, rules.hash_password(digest, iterations=10))
