"""Passwords in URLs (database and tracking URLs): masked wherever a URL is shown, refused
in parameters (``kedro viz`` and logs show parameters). Standard library only, so the
parameters and the tracking can use it without importing the sweep or Optuna."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import unquote

# user:password@ in a URL's authority (greedy up to the last "@": SQLAlchemy reads a
# password up to the first "@", so an unescaped "@" in it would otherwise leave its tail
# shown), and libpq's ?password=... query option.
_URL_PASSWORD = re.compile(r"^([A-Za-z][\w+.-]*://[^:/@]*:)(.*)@")
_QUERY_PASSWORD = re.compile(r"([?&]password=)([^&]*)", re.IGNORECASE)


def redact_url(url: str) -> str:
    """``url`` with its password shown as ``***`` (``user:pass@`` -> ``user:***@``); any
    other string (``journal``, ``env:VAR``, a URL without a password) unchanged."""
    url = _URL_PASSWORD.sub(r"\1***@", url, count=1)
    return _QUERY_PASSWORD.sub(r"\1***", url)


def url_passwords(url: str) -> set[str]:
    """The password(s) in ``url`` as written and percent-decoded (how drivers print it)."""
    authority = _URL_PASSWORD.match(url)
    found = [authority.group(2)] if authority else []
    found += [m.group(2) for m in _QUERY_PASSWORD.finditer(url)]
    return {p for raw in found if raw for p in (raw, unquote(raw))}


def refuse_password_in_parameters(storage: str) -> str:
    """``storage`` unchanged if it holds no password; a password in parameters would be
    shown in plain text by ``kedro viz`` and in logs, so it is refused with where to put it."""
    if url_passwords(storage):
        raise ValueError(
            f"sweep.storage {redact_url(storage)} holds a password, and parameters are shown "
            "in plain text (kedro viz, logs). Put the URL in conf/local/credentials.yml as "
            "`sweep_storage: {url: ...}` and set `storage: credentials:sweep_storage`, or "
            "export it and set `storage: env:GAIR_OPTUNA_STORAGE`")
    return storage


@contextmanager
def passwords_masked_in_errors(url: str) -> Iterator[None]:
    """Re-raise an error whose text (or its cause's) shows a password of ``url`` with the
    password masked, and without the original chained (a traceback would print it)."""
    try:
        yield
    except Exception as error:
        passwords = url_passwords(url)
        chain, cause = [], error
        while cause is not None and cause not in chain:
            chain.append(cause)
            cause = cause.__cause__ or cause.__context__
        if not any(p in str(e) for e in chain for p in passwords):
            raise
        message = " <- ".join(f"{type(e).__name__}: {e}" for e in chain)
        for password in sorted(passwords, key=len, reverse=True):
            message = message.replace(password, "***")
        raise RuntimeError(message) from None
