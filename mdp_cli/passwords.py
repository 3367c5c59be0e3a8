"""PDF passwords for ``mdp ingest``: from a file, the environment, a prompt or the command line.

``--password`` puts the secret on the process's command line, where ``ps`` shows it to every user
of the machine for the whole run; ``--password-file``, ``--password-env`` and ``--password-prompt``
keep it off. Every password is keyed by a file name or glob relative to the source root (see
``mdp.parsers.lookup_password``). No message ever repeats a value, not even a malformed one.
"""

from __future__ import annotations

import getpass
import os
import re
import stat
import sys
import warnings
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

FORMAT = "NAME_OR_GLOB=PASSWORD"
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class PasswordError(ValueError):
    """A password source is unusable; the message names it and the fix, never the secret."""


def _pair(text: str, where: str) -> tuple[str, str]:
    pattern, sep, secret = text.partition("=")
    if not sep or not pattern.strip() or not secret:
        raise PasswordError(f"{where}: expected {FORMAT} (the value given is not shown)")
    return pattern.strip(), secret


def from_argument(value: str) -> tuple[str, str]:
    """``--password NAME_OR_GLOB=PASSWORD``."""
    return _pair(value, "--password")


def from_file(path: Path, warn: Callable[[str], None] | None = None) -> dict[str, str]:
    """``--password-file FILE``: one NAME_OR_GLOB=PASSWORD per line; blank lines and '#' comments skipped."""
    try:
        text = path.read_text(encoding="utf-8")
        mode = path.stat().st_mode
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8 text"
        raise PasswordError(f"{path}: cannot read the password file ({why})") from None
    if warn is not None and mode & (stat.S_IRGRP | stat.S_IROTH):
        warn(f"mdp: warning: {path} is readable by other users; `chmod 600 {path}`")
    found: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        pattern, secret = _pair(line.rstrip("\r"), f"{path}, line {number}")
        found[pattern] = secret
    return found


def from_environment(spec: str, environ: Mapping[str, str] | None = None) -> tuple[str, str]:
    """``--password-env [NAME_OR_GLOB=]VAR``: the password is VAR's value; without a name, for every file."""
    environ = os.environ if environ is None else environ
    pattern, sep, variable = spec.rpartition("=")
    pattern = pattern.strip() if sep else "*"
    if not _ENV_NAME.match(variable) or not pattern:
        raise PasswordError(
            f"--password-env {spec!r}: expected VAR or NAME_OR_GLOB=VAR, VAR naming an environment variable"
        )
    secret = environ.get(variable)
    if not secret:
        raise PasswordError(f"--password-env: environment variable {variable} is not set or empty; export it")
    return pattern, secret


def from_prompt(pattern: str) -> str:
    """``--password-prompt NAME_OR_GLOB``: asked on the terminal without echo (or read from stdin)."""
    if not pattern.strip():
        raise PasswordError("--password-prompt needs a file name or glob, e.g. 'reports/*.pdf' or '*'")
    with warnings.catch_warnings():  # no terminal: stdin is a pipe, so nothing is echoed anyway
        warnings.simplefilter("ignore", getpass.GetPassWarning)
        try:
            secret = getpass.getpass(f"mdp: password for {pattern}: ", stream=sys.stderr)
        except EOFError:
            secret = ""
    if not secret:
        raise PasswordError(f"--password-prompt {pattern}: no password entered")
    return secret


def collect(
    arguments: Iterable[str] = (),
    files: Iterable[Path] = (),
    environment: Iterable[str] = (),
    prompts: Iterable[str] = (),
    warn: Callable[[str], None] | None = None,
) -> dict[str, str]:
    """Every password given, by name or glob; a later source overrides an earlier one for the same key
    (file, then environment, then --password, then prompt)."""
    found: dict[str, str] = {}
    for path in files:
        found.update(from_file(Path(path), warn))
    for spec in environment:
        pattern, secret = from_environment(spec)
        found[pattern] = secret
    for value in arguments:
        pattern, secret = from_argument(value)
        found[pattern] = secret
    for pattern in prompts:
        found[pattern.strip()] = from_prompt(pattern)
    return found
