"""Walking a project directory for the per-project task types: which files are candidates (never secrets by
name, ignored or outside the root), in balanced order, how they rank, and how their text is read."""

from __future__ import annotations

import codecs
import os
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

from bgtasks.actors.gitignore import IgnoreRules, ignored

# Directories that are never project content: VCS data, dependencies, caches and build output.
SKIPPED_DIRS = frozenset(
    {
        ".git", ".hg", ".svn", "node_modules", ".venv", "venv", "__pycache__", "dist", "build",
        ".mypy_cache", ".pytest_cache", ".ruff_cache", ".tox", ".nox", ".next", ".cache",
    }
)  # fmt: skip
# Files that commonly hold secrets: a task must never ship them to a model provider.
_SECRET_NAME = re.compile(
    r"^(\.env(\..+)?|.*\.(pem|key|p12|pfx|jks|keystore)|id_(rsa|dsa|ecdsa|ed25519)|\.netrc|\.npmrc|\.pypirc"
    r"|\.pgpass|\.git-credentials|\.dockercfg)$"
)
_SECRET_ALLOWED = frozenset({".env.example", ".env.sample", ".env.template"})
# What tells a model most about a project, best first; lock files last (large and uninformative).
_MANIFESTS = frozenset(
    {
        "pyproject.toml", "setup.py", "setup.cfg", "requirements.txt", "package.json", "tsconfig.json",
        "cargo.toml", "go.mod", "gemfile", "pom.xml", "build.gradle", "build.gradle.kts", "composer.json",
        "makefile", "dockerfile", "docker-compose.yml", "compose.yaml", "mix.exs", "deno.json",
    }
)  # fmt: skip
_LOCKFILES = frozenset(
    {"package-lock.json", "yarn.lock", "pnpm-lock.yaml", "poetry.lock", "uv.lock", "cargo.lock", "go.sum"}
)
_DOC_NAMES = re.compile(
    r"^(contributing|changelog|architecture|design|license|copying)(\..*)?$", re.IGNORECASE
)
# Data, not code: ranked after every source file, whatever their depth.
_DATA_SUFFIXES = (".csv", ".tsv", ".jsonl", ".ndjson", ".xml", ".log", ".dat", ".geojson", ".arff", ".svg",
                  ".ipynb")
DATA_BYTES = 100_000
DATA_JSON_BYTES = 20_000  # a JSON file this large is data, not configuration
_SNIFF_BYTES = 8192



@dataclass(frozen=True)
class WithheldFile:
    """A file never sent because it holds (or by its name usually holds) secrets; only its name is kept."""

    path: str
    reason: str  # "secret file name" or the kinds detect-secrets found, e.g. "Private Key, Secret Keyword"



class _StopWalk(Exception):
    """The scan limit was reached."""


class ProjectWalk:
    """The files worth considering under a root, yielded in balanced order (see collect_project_files), with
    what was skipped and why. ``groups`` is how many top-level directories share the walk."""

    def __init__(self, root: str, max_files: int) -> None:
        self.root = root
        self.max_files = max_files
        self.scanned = 0
        self.skipped: Counter[str] = Counter()
        self.withheld: list[WithheldFile] = []
        self.limit_reached = False
        self.base = ""  # the directory whose subdirectories are the groups ("" for the root)
        self.groups = 0

    def group_of(self, rel: str) -> str:
        """The top-level directory (below ``base``) a file belongs to; "" for files at or above ``base``."""
        inner = rel[len(self.base) + 1:] if self.base and rel.startswith(self.base + "/") else rel
        if self.base and inner is rel:
            return ""
        head, sep, _rest = inner.partition("/")
        return (f"{self.base}/{head}" if self.base else head) if sep else ""

    def files(self) -> Iterator[tuple[str, str, int]]:
        try:
            yield from self._balanced(self.root, "", ())
        except _StopWalk:
            self.limit_reached = True
            self.skipped["scan_limit"] = 1

    def _balanced(self, directory: str, rel_dir: str,
                  rules: tuple[IgnoreRules, ...]) -> Iterator[tuple[str, str, int]]:
        # Down the chain of single directories (src/, packages/) first: the groups are the subdirectories of
        # the first directory that has several (or none), known before any file is yielded.
        above: list[tuple[str, str, bool, tuple[IgnoreRules, ...]]] = []
        while True:
            listing = self._list(directory, rel_dir, rules)
            if listing is None:
                subdirs: list[tuple[str, str, tuple[IgnoreRules, ...]]] = []
                break
            files, subdirs = listing
            above += files
            if len(subdirs) != 1:
                break
            directory, rel_dir, rules = subdirs[0]
        self.base, self.groups = rel_dir, len(subdirs)
        for entry in above:
            yield from self._file(*entry)
        walks = [self._depth_first(*d) for d in subdirs]
        while walks:  # one file from each top-level directory in turn
            for walk in list(walks):
                item = next(walk, None)
                if item is None:
                    walks.remove(walk)
                else:
                    yield item

    def _depth_first(self, directory: str, rel_dir: str,
                     rules: tuple[IgnoreRules, ...]) -> Iterator[tuple[str, str, int]]:
        stack: list[tuple[str, str, tuple[IgnoreRules, ...]]] = [(directory, rel_dir, rules)]
        while stack:
            listing = self._list(*stack.pop())
            if listing is None:
                continue
            files, subdirs = listing
            for entry in files:
                yield from self._file(*entry)
            # Reversed so the stack pops subdirectories in name order: deterministic output.
            stack.extend(reversed(subdirs))

    def _list(self, directory: str, rel_dir: str, rules: tuple[IgnoreRules, ...]) -> (
            tuple[list[tuple[str, str, bool, tuple[IgnoreRules, ...]]],
                  list[tuple[str, str, tuple[IgnoreRules, ...]]]] | None):
        """One directory: its candidate files (rel, path, is_link, rules) and subdirectories, in name order."""
        own = IgnoreRules.load(os.path.join(directory, ".gitignore"), rel_dir)
        if own is not None:
            rules = (*rules, own)
        try:
            with os.scandir(directory) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError:
            self.skipped["unreadable"] += 1
            return None
        files: list[tuple[str, str, bool, tuple[IgnoreRules, ...]]] = []
        subdirs: list[tuple[str, str, tuple[IgnoreRules, ...]]] = []
        for entry in entries:
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            try:
                is_link = entry.is_symlink()
                is_dir = entry.is_dir(follow_symlinks=True)
                is_file = entry.is_file(follow_symlinks=True)
            except OSError:
                self.skipped["unreadable"] += 1
                continue
            if is_dir:
                if is_link:
                    self.skipped["symlinked_dir"] += 1  # following would allow loops and escapes
                elif entry.name in SKIPPED_DIRS or os.path.exists(os.path.join(entry.path, "pyvenv.cfg")):
                    self.skipped["ignored_dir"] += 1
                elif ignored(rules, rel, is_dir=True):
                    self.skipped["gitignored"] += 1
                else:
                    subdirs.append((entry.path, rel, rules))
            elif not is_file:
                self.skipped["not_a_file"] += 1  # broken links, sockets, fifos
            else:
                files.append((rel, entry.path, is_link, rules))
        return files, subdirs

    def _file(self, rel: str, path: str, is_link: bool,
              rules: tuple[IgnoreRules, ...]) -> Iterator[tuple[str, str, int]]:
        if self.scanned >= self.max_files:
            raise _StopWalk
        self.scanned += 1
        name = rel.rsplit("/", 1)[-1].lower()
        if ignored(rules, rel, is_dir=False):
            self.skipped["gitignored"] += 1
        elif _SECRET_NAME.match(name) and name not in _SECRET_ALLOWED:
            self.skipped["secret"] += 1
            self.withheld.append(WithheldFile(rel, "secret file name"))
        elif is_link and not _inside(path, self.root):
            self.skipped["symlink_outside"] += 1
        else:
            try:
                size = os.stat(path).st_size
            except OSError:
                self.skipped["unreadable"] += 1
                return
            yield rel, path, size


def _inside(path: str, root: str) -> bool:
    real = os.path.realpath(path)
    return real == root or real.startswith(root.rstrip(os.sep) + os.sep)


def file_rank(rel: str, size: int) -> tuple[int, int, int]:
    """Smaller is better: (kind, depth, size). Kinds: 0 README, 1 manifests, 2 docs, 3 source, 4 data (by
    extension, or any other file over DATA_BYTES), 5 lock files and minified bundles."""
    name = rel.rsplit("/", 1)[-1].lower()
    depth = rel.count("/")
    if name.startswith("readme"):
        kind = 0
    elif name in _MANIFESTS or (name.startswith("requirements") and name.endswith(".txt")):
        kind = 1
    elif _DOC_NAMES.match(name) or name.endswith((".md", ".rst")):
        kind = 2
    elif name in _LOCKFILES or name.endswith((".min.js", ".min.css", ".map")):
        kind = 5
    elif name.endswith(_DATA_SUFFIXES) or size > DATA_BYTES or (name.endswith(".json") and size > DATA_JSON_BYTES):
        kind = 4
    else:
        kind = 3
    return kind, depth, size


def read_text(path: str, limit: int) -> tuple[str, bool] | None:
    """Up to ``limit`` characters of a UTF-8 text file and whether it was cut; None for binary files."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(_SNIFF_BYTES)
            if b"\0" in head:
                return None
            # Every character takes at least one byte, so ``limit`` bytes never decode to more characters.
            rest = fh.read(max(0, limit - len(head))) if len(head) < limit else b""
            data = head + rest
            more = bool(fh.read(1))
    except OSError:
        return None
    cut = more or len(data) > limit
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        # final=not cut: a multi-byte character split at the cut is dropped, not an error.
        text = decoder.decode(data[:limit] if cut else data, final=not cut)
    except UnicodeDecodeError:
        return None
    return text, cut
