"""Checks of a remote MLflow tracking server, and removal of credentials from text that is shown.

MLflow 3.17's HTTP client retries a refused connection 7 times with exponential backoff and waits
up to 120 s per request (``MLFLOW_HTTP_REQUEST_MAX_RETRIES``, ``MLFLOW_HTTP_REQUEST_TIMEOUT``).
A training script pointed at a server that is down therefore got its first error after 4 minutes
(measured: 247 s on a closed port of 127.0.0.1). `check_server` sends one request with a short
timeout and few retries instead, so such a script fails within seconds, before the first epoch.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import time
import urllib.parse
from keras_mlflow_savedmodel import _compat
from keras_mlflow_savedmodel.errors import TrackingServerError, TrackingStoreError

HTTP_TIMEOUT_ENV = "MLFLOW_HTTP_REQUEST_TIMEOUT"
HTTP_MAX_RETRIES_ENV = "MLFLOW_HTTP_REQUEST_MAX_RETRIES"
USERNAME_ENV = "MLFLOW_TRACKING_USERNAME"
PASSWORD_ENV = "MLFLOW_TRACKING_PASSWORD"
TOKEN_ENV = "MLFLOW_TRACKING_TOKEN"

# Used by the check unless the environment variables above are set.
CHECK_TIMEOUT_SECONDS = 10
CHECK_MAX_RETRIES = 2
# Retries sleep 0 s, then 2 s (urllib3's backoff: factor * 2 ** (retry - 1) from the second retry).
CHECK_BACKOFF_FACTOR = 1
# MLflow 3.17's defaults, quoted in messages.
MLFLOW_DEFAULT_TIMEOUT_SECONDS = 120
MLFLOW_DEFAULT_MAX_RETRIES = 7

# An endpoint that every MLflow tracking server serves and that needs READ permission at most.
CHECK_ENDPOINT = "/api/2.0/mlflow/experiments/search"
REDACTED = "***"
# Python's repr of the urllib3 connection object that prefixes its connection errors.
_OBJECT_REPR_RE = re.compile(r"^<[^>]*>:\s*")


def redact_uri(uri: str) -> str:
    """Return `uri` with the credentials of its user-info part replaced by ``***``.

    A password is replaced and the username kept. A username without a password is replaced too,
    because such a user-info part usually is an access token.
    """
    parts = urllib.parse.urlsplit(uri)
    if parts.username is None and parts.password is None:
        return uri
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    if parts.password is not None:
        netloc = f"{parts.username or ''}:{REDACTED}@{host}"
    else:
        netloc = f"{REDACTED}@{host}"
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def secrets_of(uri: str) -> list:
    """Return the secrets that text about `uri` must not show: URI credentials and token env vars."""
    parts = urllib.parse.urlsplit(uri)
    secrets = []
    if parts.password:
        secrets.append(parts.password)
    elif parts.username:
        secrets.append(parts.username)
    for name in (PASSWORD_ENV, TOKEN_ENV):
        value = os.environ.get(name)
        if value:
            secrets.append(value)
    # Credentials in a URI may be percent-encoded, and MLflow's messages may show either form.
    secrets += [urllib.parse.unquote(secret) for secret in secrets]
    return sorted({secret for secret in secrets if secret}, key=len, reverse=True)


def redact_secrets(text: str, uri: str) -> str:
    """Return `text` with every secret of `uri` (see `secrets_of`) replaced by ``***``."""
    text = text.replace(uri, redact_uri(uri))
    for secret in secrets_of(uri):
        text = text.replace(secret, REDACTED)
    return text


class _RedactingStream:
    """A text stream wrapper that removes the secrets of a URI from everything written to it."""

    def __init__(self, stream, uri: str):
        self._stream = stream
        self._uri = uri

    def write(self, text: str) -> int:
        self._stream.write(redact_secrets(text, self._uri))
        # The caller's count, so that callers that check it see their whole text written.
        return len(text)

    def __getattr__(self, name):
        return getattr(self._stream, name)


@contextlib.contextmanager
def redacted_stdout(uri: str):
    """Remove the credentials in `uri` from what is written to ``sys.stdout`` inside the block.

    MLflow 3.17 prints the run's URL on ``http(s)`` stores when a run ends, with the credentials of
    the tracking URI in it. Without credentials in `uri` this does nothing.
    """
    parts = urllib.parse.urlsplit(uri)
    if parts.username is None and parts.password is None:
        yield
        return
    original = sys.stdout
    sys.stdout = _RedactingStream(original, uri)
    try:
        yield
    finally:
        sys.stdout = original


def is_http_uri(uri: str) -> bool:
    """Return True for an ``http:`` or ``https:`` tracking URI."""
    return urllib.parse.urlsplit(uri).scheme.lower() in ("http", "https")


def _positive_int_from_env(name: str, default: int, minimum: int) -> int:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or value < minimum:
        raise TrackingStoreError(
            raw,
            f"environment variable {name}",
            f"The environment variable {name}={raw!r} is invalid: it must be a whole number of at "
            f"least {minimum}. Unset it, or set it to a number such as {default}.",
        )
    return value


def check_limits() -> tuple:
    """Return the timeout in seconds and the retry count that `check_server` uses."""
    timeout = _positive_int_from_env(HTTP_TIMEOUT_ENV, CHECK_TIMEOUT_SECONDS, minimum=1)
    retries = _positive_int_from_env(HTTP_MAX_RETRIES_ENV, CHECK_MAX_RETRIES, minimum=0)
    return timeout, retries


def _credential_source(uri: str, host_creds) -> str:
    if urllib.parse.urlsplit(uri).username is not None:
        return "the credentials in the URI were sent"
    if host_creds.username and host_creds.password:
        return f"the credentials from {USERNAME_ENV} and {PASSWORD_ENV} (or ~/.mlflow/credentials) were sent"
    if host_creds.token:
        return f"the token from {TOKEN_ENV} was sent"
    return "no credentials were sent"


def _connection_cause(error: BaseException) -> str:
    """Return the innermost reason of a failed request, such as ``[Errno 111] Connection refused``."""
    while error.__cause__ is not None or error.__context__ is not None:
        error = error.__cause__ or error.__context__
    reason = getattr(error.args[0], "reason", None) if error.args else None
    text = str(reason if reason is not None else error)
    return _OBJECT_REPR_RE.sub("", text)


def check_server(uri: str, source: str) -> None:
    """Send one authenticated request to the tracking server at `uri` and raise if it fails.

    Args:
        uri: An ``http:`` or ``https:`` tracking URI.
        source: Where `uri` came from, quoted in error messages.

    Raises:
        TrackingServerError: The server cannot be reached in time, rejects the credentials, or
            returns an error status to a request that every MLflow tracking server serves. The message shows the URI without
            credentials.
    """
    from mlflow.exceptions import MlflowException
    from mlflow.utils.rest_utils import http_request

    timeout, retries = check_limits()
    shown_uri = redact_uri(uri)
    host_creds = _compat.default_host_creds(uri)
    started = time.monotonic()
    try:
        response = http_request(
            host_creds,
            CHECK_ENDPOINT,
            "GET",
            max_retries=retries,
            backoff_factor=CHECK_BACKOFF_FACTOR,
            backoff_jitter=0,
            timeout=timeout,
            raise_on_status=False,
            params={"max_results": 1},
        )
    except MlflowException as error:
        seconds = time.monotonic() - started
        cause = redact_secrets(_connection_cause(error), uri)
        # Not chained: MLflow's message and its cause show the full URL, credentials included.
        raise TrackingServerError(
            shown_uri,
            source,
            None,
            f"Cannot reach the MLflow tracking server {shown_uri} (from {source}): {cause}. "
            f"The check gave up after {seconds:.1f} s ({timeout} s timeout per attempt, "
            f"{retries} retries). Check that the server is running and that the URI is right. "
            f"For a slow server, set {HTTP_TIMEOUT_ENV} (seconds per request, MLflow's default "
            f"{MLFLOW_DEFAULT_TIMEOUT_SECONDS}) and {HTTP_MAX_RETRIES_ENV} (MLflow's default "
            f"{MLFLOW_DEFAULT_MAX_RETRIES}); both apply to this check and to MLflow's own requests.",
        ) from None

    status = response.status_code
    if status == 200:
        return
    if status in (401, 403):
        problem = "rejected the credentials" if status == 401 else "denied access to the account"
        raise TrackingServerError(
            shown_uri,
            source,
            status,
            f"The MLflow tracking server {shown_uri} (from {source}) {problem} with HTTP {status} "
            f"{response.reason}; {_credential_source(uri, host_creds)}. Set {USERNAME_ENV} and "
            f"{PASSWORD_ENV} (or {TOKEN_ENV}) to an account that may read and create experiments "
            "on that server.",
        )
    raise TrackingServerError(
        shown_uri,
        source,
        status,
        f"The MLflow tracking server {shown_uri} (from {source}) answered HTTP {status} "
        f"{response.reason} to GET {CHECK_ENDPOINT}, so it may not be an MLflow tracking server, "
        "or the URI may miss a path prefix. Check the URI.",
    )

