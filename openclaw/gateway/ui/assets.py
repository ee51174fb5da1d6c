"""The Control UI's static files, fingerprinted once at startup.

Every file except ``index.html`` is served under ``assets/`` with a content
hash in its name (``js/app.js`` -> ``assets/js/app.3f2a9c1b7d.js``), so
browsers may cache it for a year. ES modules import each other by relative
path; those specifiers are rewritten to the hashed names, and a file's hash
covers its rewritten text, so changing a module changes the names of every
module that imports it (a bundler's content hashing, without a bundler).
"""

from __future__ import annotations

import gzip
import hashlib
import re
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePosixPath
from types import MappingProxyType

from attrs import field, frozen

#: The files shipped with the package (``openclaw/gateway/ui/static``).
STATIC_DIR = Path(__file__).parent / "static"

CONTENT_TYPES: Mapping[str, bytes] = MappingProxyType(
    {
        ".js": b"text/javascript; charset=utf-8",
        ".mjs": b"text/javascript; charset=utf-8",
        ".css": b"text/css; charset=utf-8",
        ".html": b"text/html; charset=utf-8",
        ".svg": b"image/svg+xml",
        ".png": b"image/png",
        ".ico": b"image/x-icon",
        ".json": b"application/json",
    }
)
_SCRIPTS = (".js", ".mjs")
#: ``import x from "./a.js"``, ``export * from "../b.js"``, ``import "./c.js"``,
#: ``import("./d.js")``: relative specifiers only.
_IMPORT = re.compile(r"""(\bfrom\s*|\bimport\s*\(?\s*)(["'])(\.{1,2}/[^"'\s]+)\2""")
#: ``href="css/app.css"`` / ``src="js/app.js"`` in index.html (relative, no scheme).
_HTML_REF = re.compile(r"""\b(href|src)="([A-Za-z0-9_./-]+\.[a-z]+)\"""")
_HASH_CHARS = 10
_GZIP_MIN = 1024


class AssetError(Exception):
    """The static tree is inconsistent (a missing import, an import cycle)."""


@frozen
class Asset:
    """One servable file."""

    body: bytes
    content_type: bytes
    etag: bytes
    #: Worth compressing (text over 1 KiB); see :attr:`gzipped`.
    compressible: bool = False
    _packed: list[bytes | None] = field(init=False, factory=list, eq=False, repr=False)

    @property
    def gzipped(self) -> bytes | None:
        """The body gzip-compressed, or None when that is not worth it.

        Made on first use, not at start: an idle gateway does not hold the
        compressed copies (0.3 MB of RSS, issue 16).
        """
        if not self.compressible:
            return None
        if not self._packed:
            # mtime=0: the same bytes on every start, so the compressed form is stable too.
            packed = gzip.compress(self.body, compresslevel=9, mtime=0)
            self._packed.append(packed if len(packed) < len(self.body) else None)
        return self._packed[0]


@frozen
class AssetBundle:
    """``index.html`` and the hashed assets, keyed by their served name."""

    index: Asset
    #: ``js/app.3f2a9c1b7d.js`` -> the file (names relative to ``assets/``).
    assets: Mapping[str, Asset]
    #: ``js/app.js`` -> ``js/app.3f2a9c1b7d.js``.
    names: Mapping[str, str]

    @classmethod
    def load(cls, root: Path = STATIC_DIR) -> AssetBundle:
        """Read and fingerprint every file under ``root`` (which holds ``index.html``)."""
        sources = {
            path.relative_to(root).as_posix(): path.read_bytes()
            for path in sorted(root.rglob("*"))
            if path.is_file() and path.name != "index.html" and _servable(path)
        }
        names: dict[str, str] = {}
        assets: dict[str, Asset] = {}
        for name in _dependency_order(sources):
            body = sources[name]
            if name.endswith(_SCRIPTS):
                body = _rewrite_imports(name, body, names)
            hashed = _hashed_name(name, body)
            names[name] = hashed
            assets[hashed] = _asset(name, body)
        index = (root / "index.html").read_bytes()
        index = _rewrite_html(index, names)
        return cls(
            index=_asset("index.html", index),
            assets=MappingProxyType(assets),
            names=MappingProxyType(names),
        )


def _servable(path: Path) -> bool:
    return path.suffix in CONTENT_TYPES


def _asset(name: str, body: bytes) -> Asset:
    digest = hashlib.sha256(body).hexdigest()[:20]
    content_type = CONTENT_TYPES[PurePosixPath(name).suffix]
    return Asset(
        body=body,
        content_type=content_type,
        etag=b'"' + digest.encode("ascii") + b'"',
        compressible=len(body) > _GZIP_MIN and not content_type.startswith(b"image/png"),
    )


def _hashed_name(name: str, body: bytes) -> str:
    digest = hashlib.sha256(body).hexdigest()[:_HASH_CHARS]
    path = PurePosixPath(name)
    return str(path.with_name(f"{path.stem}.{digest}{path.suffix}"))


def _resolve(importer: str, specifier: str) -> str:
    """The static-tree name ``specifier`` points at, seen from ``importer``."""
    parts: list[str] = list(PurePosixPath(importer).parent.parts)
    for piece in PurePosixPath(specifier).parts:
        if piece == "..":
            if not parts:
                raise AssetError(f"{importer}: import {specifier!r} leaves the static tree")
            parts.pop()
        elif piece != ".":
            parts.append(piece)
    return "/".join(parts)


def _imports(name: str, body: bytes) -> Iterator[str]:
    for match in _IMPORT.finditer(body.decode("utf-8")):
        yield _resolve(name, match.group(3))


def _dependency_order(sources: Mapping[str, bytes]) -> list[str]:
    """Names with every module after the modules it imports (imports must not cycle)."""
    order: list[str] = []
    state: dict[str, str] = {}

    def visit(name: str, trail: tuple[str, ...]) -> None:
        if state.get(name) == "done":
            return
        if state.get(name) == "visiting":
            raise AssetError("import cycle: " + " -> ".join((*trail, name)))
        if name not in sources:
            raise AssetError(f"{trail[-1]} imports {name}, which does not exist")
        state[name] = "visiting"
        if name.endswith(_SCRIPTS):
            for dependency in _imports(name, sources[name]):
                visit(dependency, (*trail, name))
        state[name] = "done"
        order.append(name)

    for name in sources:
        visit(name, ())
    return order


def _relative(importer: str, target: str) -> str:
    """A ``./``/``../`` specifier for ``target`` as seen from ``importer``."""
    base = PurePosixPath(importer).parent.parts
    goal = PurePosixPath(target).parts
    common = 0
    while common < min(len(base), len(goal) - 1) and base[common] == goal[common]:
        common += 1
    ups = len(base) - common
    tail = "/".join(goal[common:])
    return ("../" * ups if ups else "./") + tail


def _rewrite_imports(name: str, body: bytes, names: Mapping[str, str]) -> bytes:
    def replace(match: re.Match[str]) -> str:
        target = names[_resolve(name, match.group(3))]
        quote = match.group(2)
        return f"{match.group(1)}{quote}{_relative(name, target)}{quote}"

    return _IMPORT.sub(replace, body.decode("utf-8")).encode("utf-8")


def _rewrite_html(body: bytes, names: Mapping[str, str]) -> bytes:
    def replace(match: re.Match[str]) -> str:
        target = names.get(match.group(2))
        if target is None:
            raise AssetError(f"index.html refers to {match.group(2)}, which does not exist")
        return f'{match.group(1)}="assets/{target}"'

    return _HTML_REF.sub(replace, body.decode("utf-8")).encode("utf-8")
