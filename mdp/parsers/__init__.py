"""Format registry: which parser reads which file.

Built-in formats: ``pdf``, ``jsonl``, ``markdown``, ``html``, ``text``. A third-party
package adds a format with one entry point in the ``mdp.parsers`` group that resolves
to a :class:`~mdp.parsers.base.Parser` class or instance (see docs/plugins.md)::

    [project.entry-points."mdp.parsers"]
    rst = "mdp_rst:RstParser"

A plugin that fails to import or does not fit the protocol is skipped with a warning
naming it; the built-ins keep working. :func:`register_parser` adds a parser in-process
(tests, notebooks); such parsers are shipped to the parse workers by pickling, so define
them at module level.
"""

from __future__ import annotations

import threading
import warnings
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from mdp.parsers.base import (
    ParseContext,
    ParsedDocument,
    ParseFailure,
    Parser,
    ParserSetupError,
    lookup_password,
)

ENTRY_POINT_GROUP = "mdp.parsers"

__all__ = [
    "ENTRY_POINT_GROUP",
    "ParseContext",
    "ParseFailure",
    "ParsedDocument",
    "Parser",
    "ParserSetupError",
    "UnknownFormatError",
    "available_formats",
    "format_for_path",
    "get_parser",
    "in_process_parsers",
    "lookup_password",
    "parser_for_path",
    "register_parser",
    "registered_parsers",
    "unregister_parser",
]


class UnknownFormatError(LookupError):
    """No parser is registered for a format."""

    def __str__(self) -> str:  # LookupError would repr() a single argument
        return str(self.args[0]) if self.args else ""


class _Registry:
    def __init__(self) -> None:
        self.by_format: dict[str, Parser] = {}
        self.by_extension: dict[str, str] = {}
        self.origin: dict[str, str] = {}  # format -> "builtin" | "plugin <name>" | "in-process"
        self.in_process: list[Parser] = []
        # built-ins and plugins, kept so that unregistering an override restores them
        self.base_formats: dict[str, tuple[Parser, str]] = {}
        self.base_extensions: dict[str, str] = {}
        self.loaded = False
        self.lock = threading.RLock()


_REG = _Registry()


def _check_parser(obj: Any) -> Parser:
    missing = [attr for attr in ("name", "formats", "extensions", "parse") if not hasattr(obj, attr)]
    if missing:
        raise TypeError(f"{obj!r} is not an mdp Parser: missing {', '.join(missing)}")
    if not callable(obj.parse):
        raise TypeError(f"{obj!r}.parse is not callable")
    if isinstance(obj.formats, str) or not obj.formats:
        raise TypeError(f"{obj!r}.formats must be a non-empty tuple of format names")
    if isinstance(obj.extensions, str):
        raise TypeError(f"{obj!r}.extensions must be a tuple like ('.rst',)")
    for ext in obj.extensions:
        if not (isinstance(ext, str) and ext.startswith(".")):
            raise TypeError(f"{obj!r}: extension {ext!r} must start with a dot, e.g. '.rst'")
    return obj  # type: ignore[no-any-return]


def _add(parser: Parser, origin: str, replace: bool) -> None:
    parser = _check_parser(parser)
    formats = [f.lower() for f in parser.formats]
    extensions = [e.lower() for e in parser.extensions]
    if not replace:
        for fmt in formats:
            if fmt in _REG.by_format:
                raise ValueError(
                    f"format {fmt!r} is already handled by {_REG.by_format[fmt].name!r} "
                    f"({_REG.origin[fmt]}); "
                    "pass replace=True to override it"
                )
        for ext in extensions:
            if ext in _REG.by_extension:
                raise ValueError(
                    f"extension {ext!r} is already mapped to format {_REG.by_extension[ext]!r}; "
                    "pass replace=True to override it"
                )
    for fmt in formats:
        _REG.by_format[fmt] = parser
        _REG.origin[fmt] = origin
    for ext in extensions:
        _REG.by_extension[ext] = formats[0]


def _builtins() -> list[Parser]:
    from mdp.parsers.jsonl import JsonlParser
    from mdp.parsers.markup import HtmlParser, MarkdownParser, TextParser
    from mdp.parsers.pdf import PdfParser

    return [PdfParser(), JsonlParser(), MarkdownParser(), HtmlParser(), TextParser()]


def _load_plugins() -> None:
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        try:
            obj = ep.load()
            parser = obj() if isinstance(obj, type) else obj
            _check_parser(parser)
            taken = [f for f in parser.formats if f.lower() in _REG.by_format]
            if taken:
                raise ValueError(f"format(s) {', '.join(taken)} already registered; choose other names")
            _add(parser, f"plugin {ep.name} ({ep.value})", replace=False)
        except Exception as exc:  # a broken plugin must never break the built-ins
            warnings.warn(
                f"mdp parser plugin {ep.name!r} ({ep.value}) is skipped: {type(exc).__name__}: {exc}",
                RuntimeWarning,
                stacklevel=2,
            )


def _ensure_loaded() -> None:
    if _REG.loaded:
        return
    with _REG.lock:
        if _REG.loaded:
            return
        for parser in _builtins():
            _add(parser, "builtin", replace=False)
        _load_plugins()
        _REG.base_formats = {f: (p, _REG.origin[f]) for f, p in _REG.by_format.items()}
        _REG.base_extensions = dict(_REG.by_extension)
        _REG.loaded = True


def _reset_registry() -> None:
    """Forget every registration; the next lookup reloads built-ins and plugins (tests use this)."""
    global _REG
    with _REG.lock:
        _REG = _Registry()


def register_parser(parser: Parser | type, *, replace: bool = False) -> Parser:
    """Add a parser (instance or class) in this process. Returns the registered instance."""
    _ensure_loaded()
    instance: Parser = parser() if isinstance(parser, type) else parser
    with _REG.lock:
        _add(instance, "in-process", replace=replace)
        _REG.in_process = [p for p in _REG.in_process if p is not instance] + [instance]
    return instance


def unregister_parser(fmt: str) -> None:
    """Remove an in-process parser; a built-in or plugin it replaced comes back."""
    _ensure_loaded()
    with _REG.lock:
        parser = _REG.by_format.get(fmt.lower())
        if parser is None or _REG.origin.get(fmt.lower()) != "in-process":
            raise ValueError(f"format {fmt!r} was not registered in-process")
        for key in [k for k, p in _REG.by_format.items() if p is parser]:
            del _REG.by_format[key]
            del _REG.origin[key]
            if key in _REG.base_formats:
                _REG.by_format[key], _REG.origin[key] = _REG.base_formats[key]
        for ext in [e for e, f in _REG.by_extension.items() if f not in _REG.by_format]:
            del _REG.by_extension[ext]
        for ext, key in _REG.base_extensions.items():
            _REG.by_extension.setdefault(ext, key)
        _REG.in_process = [p for p in _REG.in_process if p is not parser]


def in_process_parsers() -> list[Parser]:
    """Parsers added with :func:`register_parser` (the parse workers need them too)."""
    _ensure_loaded()
    return list(_REG.in_process)


def available_formats() -> list[str]:
    _ensure_loaded()
    return sorted(_REG.by_format)


def registered_parsers() -> dict[str, tuple[Parser, str]]:
    """format -> (parser, origin) where origin is 'builtin', 'plugin <name> (<target>)' or 'in-process'."""
    _ensure_loaded()
    return {fmt: (_REG.by_format[fmt], _REG.origin[fmt]) for fmt in sorted(_REG.by_format)}


def get_parser(fmt: str) -> Parser:
    _ensure_loaded()
    parser = _REG.by_format.get(fmt.lower())
    if parser is None:
        raise UnknownFormatError(
            f"no parser registered for format {fmt!r}; available: {', '.join(available_formats())}. "
            f"Add one with a package exposing an entry point in the {ENTRY_POINT_GROUP!r} group "
            "(see docs/plugins.md), or call mdp.parsers.register_parser() in-process"
        )
    return parser


def format_for_path(path: str | Path) -> str | None:
    """The format key for a file name by its extension (case-insensitive), or None."""
    _ensure_loaded()
    name = Path(path).name.lower()
    # longest extension first, so '.tar.gz'-style plugin extensions win over '.gz'
    for ext in sorted(_REG.by_extension, key=len, reverse=True):
        if name.endswith(ext) and len(name) > len(ext):
            return _REG.by_extension[ext]
    return None


def parser_for_path(path: str | Path) -> Parser | None:
    fmt = format_for_path(path)
    return get_parser(fmt) if fmt else None
