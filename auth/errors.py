"""What auth's domain refuses, as exceptions the API turns into answers."""

from __future__ import annotations


class EmailTaken(Exception):
    pass


class InvalidCredentials(Exception):
    pass


class WeakPassword(ValueError):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class LoginLocked(Exception):
    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"locked for {retry_after_s}s")
        self.retry_after_s = retry_after_s


class InvalidRefreshToken(Exception):
    pass


class UnknownUser(Exception):
    pass


class InvalidResetToken(Exception):
    pass
