"""SMTP AUTH off the event loop: a cache of verified credentials, failure throttling, single-flight.

- argon2 runs in a small thread pool (it is slow on purpose, all CPU); the event loop never waits.
- A verified (username, password) pair is remembered as an HMAC keyed with SECRET_KEY (never the
  password) together with the password hash it matched. A hit re-reads the login row (one
  indexed query) and counts only while that hash and the enabled flag are unchanged, and for at
  most SMTP_AUTH_CACHE_TTL seconds.
- Failures are counted within SMTP_AUTH_FAILURE_WINDOW, keyed by digests (a username may be
  12 KB), in two ways, each with the limit SMTP_AUTH_MAX_FAILURES:
  guessing: failures per (IP, username); at the limit that username is refused from that IP
  (454 4.7.0), right password or not, cached or not;
  stuffing: distinct usernames that failed from one IP; at the limit that IP gets no more
  argon2 checks (454 4.7.0), but pairs in the verified cache still pass.
  So neither failures from other addresses nor another application's failures behind the
  same address (NAT) lock out a login whose password is right. Nothing counts failures per
  username across addresses: passwords are ~190 random bits, and the argon2 work that
  spread-out guessing costs is bounded by the queue below.
- At most SMTP_AUTH_MAX_PENDING argon2 checks wait or run at once; past that an attempt that
  needs one is refused at once (454 4.7.0), so a flood of wrong AUTHs from many addresses
  cannot queue up CPU work or delay anyone else; cached pairs do not need a check.
- Uncached checks from one IP run one at a time, so a second concurrent attempt from the same IP
  waits for the first one's result and sees the failure it counted. Identical credentials being
  checked concurrently (a client opening ten connections at once) share one argon2 check.

State is per process.
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from concurrent.futures import Executor
from dataclasses import dataclass

from django.conf import settings

from smtpeter_site.db import with_live_connection
from smtpeter_site.keys import key_for
from smtpeter_site.throttle import FailureCounter

from .esmtp_params import printable

log = logging.getLogger("relay.auth")
_MAX_ENTRIES = 20_000
USERNAME_LOG_MAX = 100  # a username may be 12 KB, or a password typed into the wrong field


def _user_key(username: str) -> bytes:
    """The failure counters' key for a username: a 128-bit digest, so that 20,000 counted
    usernames of up to 12 KB each cost no more than short ones."""
    return hashlib.blake2b(username.encode("utf-8", "surrogateescape"), digest_size=16).digest()


def log_username(username: str) -> str:
    """The username as it goes into a log line: escaped, at most USERNAME_LOG_MAX characters."""
    return printable(username, USERNAME_LOG_MAX)


@dataclass(frozen=True)
class LoginInfo:
    id: int
    username: str
    owner_id: int


@dataclass(frozen=True)
class Outcome:
    login: LoginInfo | None = None
    throttled: bool = False
    busy: bool = False  # refused because too many argon2 checks are pending
    cached: bool = False  # verified from the cache, without argon2


def _connection_lost(exc: Exception) -> None:
    log.warning("AUTH database connection lost (%s); reconnecting",
                printable(str(exc).strip() or type(exc).__name__))


def lookup_row(username: str):
    """_lookup_row on a live connection (smtpeter_site.db.with_live_connection)."""
    return with_live_connection(_lookup_row, username, on_lost=_connection_lost)


def verify(username: str, password: str):
    """_verify on a live connection (smtpeter_site.db.with_live_connection)."""
    return with_live_connection(_verify, username, password, on_lost=_connection_lost)


def _lookup_row(username: str):
    from credentials.services import auth_row

    return auth_row(username)


def _verify(username: str, password: str):
    from credentials.services import authenticate

    login = authenticate(username, password)
    if login is None:
        return None
    return login.id, login.password_hash, login.owner_id


class Authenticator:
    def __init__(self, argon_pool: Executor, db_pool: Executor):
        self.argon_pool = argon_pool
        self.db_pool = db_pool
        self.ttl = settings.SMTP_AUTH_CACHE_TTL
        limit, window = settings.SMTP_AUTH_MAX_FAILURES, settings.SMTP_AUTH_FAILURE_WINDOW
        self.failures = FailureCounter(limit, window)  # per (IP, username): guessing
        self.usernames = FailureCounter(limit, window, distinct=True)  # per IP: stuffing
        self.max_pending = settings.SMTP_AUTH_MAX_PENDING
        self.pending = 0  # argon2 checks handed to argon_pool and not finished
        self._busy_refused = 0  # refused because of max_pending since the last log line
        self._cache: dict[bytes, tuple[str, float]] = {}
        self._inflight: dict[bytes, asyncio.Future] = {}
        self._ip_locks: dict[str, list] = {}  # ip -> [lock, users]
        self._secret = key_for("smtp-auth-cache")

    def _key(self, username: str, password: str) -> bytes:
        # Length-prefixed so that no two (username, password) pairs share a key.
        data = f"{len(username)}:{username}:{password}".encode("utf-8", "surrogateescape")
        return hmac.new(self._secret, data, hashlib.sha256).digest()

    def _guessing(self, ip: str, username: str) -> bool:
        if self.failures.blocked((ip, _user_key(username))):
            log.warning("AUTH throttled: ip=%s username='%s' (too many failures for this "
                        "username from this IP)", ip, log_username(username))
            return True
        return False

    def _stuffing(self, ip: str, username: str) -> bool:
        if self.usernames.blocked(ip):
            log.warning("AUTH throttled: ip=%s username='%s' (failures for too many usernames "
                        "from this IP; only verified credentials pass)", ip,
                        log_username(username))
            return True
        return False

    def _log_busy(self, ip: str, username: str) -> None:
        # One line per 100 refusals: a flood of them is what this limit is there for.
        if self._busy_refused % 100 == 0:
            log.warning("AUTH refused: ip=%s username='%s' (argon2 queue full: %d checks "
                        "pending, SMTP_AUTH_MAX_PENDING; %d such refusals before this one)", ip,
                        log_username(username), self.pending, self._busy_refused)
        self._busy_refused += 1

    async def check(self, ip: str, username: str, password: str) -> Outcome:
        loop = asyncio.get_running_loop()
        if self._guessing(ip, username):
            return Outcome(throttled=True)
        key = self._key(username, password)
        cached = self._cache.get(key)
        if cached is not None:
            if cached[1] > time.monotonic():
                row = await loop.run_in_executor(self.db_pool, lookup_row, username)
                if row is not None and row[1] == cached[0] and row[2]:
                    return Outcome(login=LoginInfo(row[0], username, row[3]), cached=True)
            self._cache.pop(key, None)
        if self._stuffing(ip, username):
            return Outcome(throttled=True)
        shared = self._inflight.get(key)
        if shared is not None:
            return await asyncio.shield(shared)
        future = loop.create_future()
        self._inflight[key] = future
        try:
            outcome = await self._verify_serialised(ip, username, password, key)
            future.set_result(outcome)
            return outcome
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: nobody else may be waiting
            raise
        finally:
            del self._inflight[key]

    async def _verify_serialised(self, ip: str, username: str, password: str, key: bytes):
        entry = self._ip_locks.setdefault(ip, [asyncio.Lock(), 0])
        entry[1] += 1
        try:
            async with entry[0]:
                # Attempts that waited for this IP's previous check see what it counted.
                if self._guessing(ip, username) or self._stuffing(ip, username):
                    return Outcome(throttled=True)
                if self.pending >= self.max_pending:
                    self._log_busy(ip, username)
                    return Outcome(throttled=True, busy=True)
                loop = asyncio.get_running_loop()
                self.pending += 1
                try:
                    result = await loop.run_in_executor(
                        self.argon_pool, verify, username, password
                    )
                finally:
                    self.pending -= 1
                user = _user_key(username)
                if result is None:
                    self.failures.add((ip, user))
                    self.usernames.add(ip, user)
                    log.warning("AUTH failed: ip=%s username='%s'", ip, log_username(username))
                    return Outcome()
                self.failures.clear((ip, user))
                login_id, password_hash, owner_id = result
                if len(self._cache) >= _MAX_ENTRIES:
                    self._cache.clear()
                self._cache[key] = (password_hash, time.monotonic() + self.ttl)
                return Outcome(login=LoginInfo(login_id, username, owner_id))
        finally:
            entry[1] -= 1
            if entry[1] == 0:
                del self._ip_locks[ip]
