"""Transport retries of API requests: urllib3's :class:`~urllib3.util.retry.Retry` on a ``requests`` session.

429 and 5xx responses, timeouts and dropped connections are retried with exponential backoff, or after
the server's ``Retry-After`` when it sends one. A ``Retry-After`` longer than the source allows raises
:class:`RetryAfterTooLong` instead of waiting.
"""

from __future__ import annotations

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from sync_pipelines.config.rest import RestRetries

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
"""Statuses worth another try."""
_UNLIMITED = Retry(total=0, retry_after_max=2**31)


class RetryAfterTooLong(Exception):
    """The server asked to wait longer than ``retries.max_retry_after_s``."""

    def __init__(self, seconds: float, limit: int):
        self.seconds, self.limit = seconds, limit
        super().__init__(f"the server asked to retry after {seconds:.0f} s (Retry-After), more than {limit} s")


class ApiRetry(Retry):
    """urllib3's retry, refusing to wait for a ``Retry-After`` beyond ``retry_after_max``."""

    def parse_retry_after(self, retry_after: str) -> float:
        """The wait the server asks for, in seconds.

        Raises:
            RetryAfterTooLong: it exceeds ``retry_after_max``.
        """
        seconds = _UNLIMITED.parse_retry_after(retry_after)
        if seconds > self.retry_after_max:
            raise RetryAfterTooLong(seconds, self.retry_after_max)
        return seconds


def retrying_session(retries: RestRetries) -> requests.Session:
    """A session whose GETs are retried as ``retries`` says; a final 429 or 5xx is returned, not raised."""
    policy = ApiRetry(
        total=retries.attempts,
        connect=retries.attempts,
        read=retries.attempts,
        status=retries.attempts,
        other=0,
        allowed_methods=frozenset({"GET"}),
        status_forcelist=RETRY_STATUSES,
        backoff_factor=retries.backoff_s,
        backoff_max=60,
        raise_on_status=False,
        respect_retry_after_header=True,
        retry_after_max=retries.max_retry_after_s,
    )
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=policy)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


__all__ = ["RETRY_STATUSES", "ApiRetry", "RetryAfterTooLong", "retrying_session"]
