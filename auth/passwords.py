"""Password rules and hashing parameters."""

from __future__ import annotations

from argon2 import PasswordHasher

MIN_LENGTH = 10
MAX_LENGTH = 128

# The most common passwords of at least MIN_LENGTH characters in public breach lists.
COMMON = frozenset(
    {
        "1234567890",
        "12345678910",
        "0123456789",
        "qwertyuiop",
        "1q2w3e4r5t",
        "password123",
        "password1234",
        "iloveyou123",
        "qwerty1234",
        "1qaz2wsx3edc",
        "abcdefghij",
        "passw0rd123",
        "qwertyuiop123",
        "1111111111",
        "0000000000",
        "123123123123",
        "football123",
        "welcome123",
        "administrator",
        "changeme123",
        "letmein123",
        "smartgym123",
        "gymgymgym1",
    }
)


def password_problems(password: str, *, email: str | None = None) -> list[str]:
    """Why ``password`` is not acceptable (empty when it is)."""
    problems = []
    if len(password) < MIN_LENGTH:
        problems.append(f"must be at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        problems.append(f"must be at most {MAX_LENGTH} characters")
    if password.lower() in COMMON:
        problems.append("is one of the most common passwords")
    if len(set(password)) < 5:
        problems.append("needs at least 5 different characters")
    local_part = (email or "").split("@", 1)[0].lower()
    if len(local_part) >= 4 and local_part in password.lower():
        problems.append("must not contain your email name")
    return problems


def default_hasher() -> PasswordHasher:
    """Argon2id, m=19 MiB, t=2, p=1 (OWASP's recommended minimum): ~17 ms per hash on our
    2-core machines. docs/adr/0007-argon2-parameters.md weighs it against the login budget."""
    return PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
