"""Browser sessions of the dashboard.

The browser proves it holds the admin token once (``POST /dashboard/login``) and gets a random
session id in an ``HttpOnly; SameSite=Strict`` cookie; the id maps to a session kept in memory only
(a restart logs everyone out). Each session has its own CSRF token, which every action must echo in
the ``X-CSRF-Token`` header. Without an admin token the dashboard is open (as the API is) and one
process-wide CSRF token guards the actions instead.
"""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass, field

COOKIE = "clipper_dashboard"
CSRF_HEADER = "x-csrf-token"
SESSION_TTL_S = 12 * 3600.0
MAX_SESSIONS = 1000


@dataclass
class Session:
    sid: str
    csrf: str
    expires: float
    created: float = field(default_factory=time.time)


def parse_cookies(header: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in header.split(";"):
        name, sep, value = part.strip().partition("=")
        if sep and name:
            out.setdefault(name, value)
    return out


class Sessions:
    """In-memory session table; ``token`` ``None`` means the dashboard is open."""

    def __init__(self, token: str | None, ttl_s: float = SESSION_TTL_S, secure_cookie: bool = False) -> None:
        self._token = token.encode() if token else None
        self._ttl = ttl_s
        self._secure = secure_cookie
        self._sessions: dict[str, Session] = {}
        self._open = Session("open", secrets.token_urlsafe(32), float("inf"))

    @property
    def required(self) -> bool:
        return self._token is not None

    def check_token(self, token: str) -> bool:
        return self._token is not None and hmac.compare_digest(token.strip().encode(), self._token)

    def login(self, token: str) -> Session | None:
        """A new session when ``token`` is the admin token, else ``None``."""
        if not self.check_token(token):
            return None
        now = time.time()
        self._expire(now)
        if len(self._sessions) >= MAX_SESSIONS:  # drop the oldest rather than grow without bound
            oldest = min(self._sessions.values(), key=lambda s: s.created)
            del self._sessions[oldest.sid]
        s = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32), now + self._ttl)
        self._sessions[s.sid] = s
        return s

    def logout(self, sid: str) -> None:
        self._sessions.pop(sid, None)

    def lookup(self, cookie_header: str) -> Session | None:
        """The session the request's cookie names (the open session when no token is configured)."""
        if self._token is None:
            return self._open
        sid = parse_cookies(cookie_header).get(COOKIE)
        if not sid:
            return None
        s = self._sessions.get(sid)
        if s is None:
            return None
        if s.expires < time.time():
            del self._sessions[sid]
            return None
        return s

    @staticmethod
    def csrf_ok(session: Session, header: str | None) -> bool:
        return header is not None and hmac.compare_digest(header.encode(), session.csrf.encode())

    def set_cookie(self, s: Session) -> str:
        secure = "; Secure" if self._secure else ""
        return (
            f"{COOKIE}={s.sid}; Path=/dashboard; HttpOnly; SameSite=Strict; Max-Age={int(self._ttl)}{secure}"
        )

    @staticmethod
    def clear_cookie() -> str:
        return f"{COOKIE}=; Path=/dashboard; HttpOnly; SameSite=Strict; Max-Age=0"

    def _expire(self, now: float) -> None:
        for sid in [sid for sid, s in self._sessions.items() if s.expires < now]:
            del self._sessions[sid]
