"""Safe, budgeted reading of a project directory for the per-project task types: which files the model sees,
chosen lazily within a character budget, never outside the configured roots."""

from __future__ import annotations

import codecs
import heapq
import itertools
import os
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from bgtasks.actors.errors import ProjectPathError
from bgtasks.actors.secret_scan import secret_kinds

__all__ = ["ProjectFile", "ProjectSnapshot", "WithheldFile", "collect_project_files", "resolve_project_path"]

# (relative path, absolute path, the text that would be sent, is it the whole file) -> kinds of secret found.
SecretFinder = Callable[..., list[str]]

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
_SNIFF_BYTES = 8192
# How many withheld files the prompt names (the result lists them all).
_WITHHELD_NAMES = 50
# Keep candidates worth twice the budget: some turn out binary or undecodable only when read.
_CANDIDATE_SLACK = 2


@dataclass(frozen=True)
class ProjectFile:
    path: str  # relative to the project root, posix separators
    size: int  # bytes on disk
    content: str
    truncated: bool  # content is a prefix: the file exceeded max_file_bytes or the remaining budget


@dataclass(frozen=True)
class WithheldFile:
    """A file never sent because it holds (or by its name usually holds) secrets; only its name is kept."""

    path: str
    reason: str  # "secret file name" or the kinds detect-secrets found, e.g. "Private Key, Secret Keyword"


@dataclass
class ProjectSnapshot:
    """The files chosen for the prompt, best first, and counts of everything else."""

    root: str
    files: list[ProjectFile]
    # Files that could have been shown (not ignored, not secret, not outside the root), read or not.
    total_files_seen: int
    # Reason -> count: ignored_dir, gitignored, secret, symlinked_dir, symlink_outside, not_a_file, unreadable,
    # binary (NUL byte or not UTF-8), budget; scan_limit is 1 when the walk stopped at max_files_scanned.
    skipped: dict[str, int] = field(default_factory=dict)
    budget_chars: int = 0
    # Files kept from the model because of secrets (by name, or by content: detect-secrets), names only.
    withheld: list[WithheldFile] = field(default_factory=list)

    @property
    def content_chars(self) -> int:
        return sum(len(f.content) for f in self.files)

    def as_prompt(self) -> str:
        """A tree of the included files, then each file's contents between markers."""
        omitted = self.total_files_seen - len(self.files)
        lines = [f"Project files ({len(self.files)} of {self.total_files_seen} shown):", *_tree(self.files)]
        if omitted > 0:
            lines.append(f"({omitted} more files not shown: over the budget, binary or not UTF-8)")
        if self.withheld:
            names = ", ".join(w.path for w in self.withheld[:_WITHHELD_NAMES])
            more = f" and {len(self.withheld) - _WITHHELD_NAMES} more" if len(self.withheld) > _WITHHELD_NAMES else ""
            lines.append(f"(withheld because they hold secrets: {names}{more})")
        for f in self.files:
            note = " (truncated)" if f.truncated else ""
            lines += [
                "",
                f"===== {f.path}{note} =====",
                f.content.rstrip("\n"),
                f"===== end of {f.path} =====",
            ]
        return "\n".join(lines) + "\n"


def resolve_project_path(path: str, roots: list[Path]) -> Path:
    """The real directory ``path`` names, provided it lies inside one of ``roots`` after resolving ``..`` and
    symlinks. Containment is checked first, so the error for a path outside the roots says nothing about it."""
    if not path or not path.strip():
        raise ProjectPathError("project path is empty: give the absolute path of the project directory")
    if not roots:
        raise ProjectPathError("no project roots are configured: set the directories tasks may read")
    given = Path(path).expanduser()
    if not given.is_absolute():
        # Relative paths would depend on the worker's working directory, which the user cannot see.
        raise ProjectPathError(f"project path {path!r} is relative: give the absolute path of the project")
    resolved = given.resolve()
    real_roots = [Path(r).expanduser().resolve() for r in roots]
    if not any(resolved.is_relative_to(r) for r in real_roots):
        allowed = ", ".join(str(r) for r in real_roots)
        raise ProjectPathError(
            f"project path {path!r} is outside the allowed project roots ({allowed}); "
            "move the project under a root or add its parent to the configured roots"
        )
    if not resolved.exists():
        raise ProjectPathError(f"project path {path!r} does not exist")
    if not resolved.is_dir():
        raise ProjectPathError(f"project path {path!r} is not a directory")
    return resolved


def collect_project_files(
    root: Path,
    *,
    max_file_bytes: int = 64_000,
    budget_chars: int = 200_000,
    max_files_scanned: int = 20_000,
    find_secrets: SecretFinder | None = secret_kinds,
) -> ProjectSnapshot:
    """Walk ``root`` lazily and read the most informative text files until ``budget_chars`` is spent.

    Every file read is scanned for secrets (``find_secrets``, detect-secrets by default) before it is kept;
    one with any finding is withheld whole (a private key's body spans lines no detector flags one by one)
    and its budget goes to the next candidate.

    Memory stays bounded whatever the tree's size: the walk keeps one directory listing at a time and only the
    best candidates worth about twice the budget. Symlinked directories are never followed; symlinked files
    are read only when their target is inside ``root``.
    """
    real_root = Path(root).resolve()
    skipped: Counter[str] = Counter()
    withheld: list[WithheldFile] = []
    seen = 0
    # Max-heap (by negated rank) of the best candidates so far; the worst is evicted once the rest cover
    # the budget, so a 100,000-file tree costs no more memory than a small one.
    heap: list[tuple[tuple[int, ...], int, str, str, int]] = []
    heap_cost = 0
    tiebreak = itertools.count()
    keep_cost = budget_chars * _CANDIDATE_SLACK

    for rel, full, size in _walk(real_root, skipped, max_files_scanned, withheld):
        seen += 1
        cost = min(size, max_file_bytes)
        rank = _rank(rel, size)
        heapq.heappush(heap, (tuple(-x for x in rank), -next(tiebreak), rel, full, size))
        heap_cost += cost
        while heap and heap_cost - min(heap[0][4], max_file_bytes) >= keep_cost:
            evicted = heapq.heappop(heap)
            heap_cost -= min(evicted[4], max_file_bytes)
            skipped["budget"] += 1

    candidates = sorted(heap, reverse=True)  # best rank first
    files: list[ProjectFile] = []
    left = budget_chars
    for _rank_key, _n, rel, full, size in candidates:
        if left <= 0:
            skipped["budget"] += 1
            continue
        read = _read_text(full, min(max_file_bytes, left))
        if read is None:
            skipped["binary"] += 1
            continue
        text, cut = read
        kinds = find_secrets(rel, full, text, whole_file=not cut) if find_secrets is not None else []
        if kinds:
            skipped["secret_content"] += 1
            withheld.append(WithheldFile(rel, ", ".join(kinds)))
            continue
        files.append(ProjectFile(path=rel, size=size, content=text, truncated=cut))
        left -= len(text)

    return ProjectSnapshot(
        root=str(real_root),
        files=files,
        total_files_seen=seen,
        skipped=dict(skipped),
        budget_chars=budget_chars,
        withheld=sorted(withheld, key=lambda w: w.path),
    )


# ---------------------------------------------------------------------------------------------------------
# Walking


def _walk(root: Path, skipped: Counter[str], max_files: int,
          withheld: list[WithheldFile]) -> Iterator[tuple[str, str, int]]:
    """Yield (relative posix path, absolute path, size) of every regular file worth considering."""
    scanned = 0
    root_str = str(root)
    # Each stack entry: a directory, its path relative to root, and the .gitignore rules in force there.
    stack: list[tuple[str, str, tuple[_IgnoreRules, ...]]] = [(root_str, "", ())]
    while stack:
        directory, rel_dir, rules = stack.pop()
        own = _IgnoreRules.load(os.path.join(directory, ".gitignore"), rel_dir)
        if own is not None:
            rules = (*rules, own)
        try:
            with os.scandir(directory) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError:
            skipped["unreadable"] += 1
            continue
        subdirs: list[tuple[str, str, tuple[_IgnoreRules, ...]]] = []
        for entry in entries:
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            try:
                is_link = entry.is_symlink()
                is_dir = entry.is_dir(follow_symlinks=True)
                is_file = entry.is_file(follow_symlinks=True)
            except OSError:
                skipped["unreadable"] += 1
                continue
            if is_dir:
                if is_link:
                    skipped["symlinked_dir"] += 1  # following would allow loops and escapes
                elif entry.name in SKIPPED_DIRS or os.path.exists(os.path.join(entry.path, "pyvenv.cfg")):
                    skipped["ignored_dir"] += 1
                elif _ignored(rules, rel, is_dir=True):
                    skipped["gitignored"] += 1
                else:
                    subdirs.append((entry.path, rel, rules))
                continue
            if not is_file:
                skipped["not_a_file"] += 1  # broken links, sockets, fifos
                continue
            if scanned >= max_files:
                skipped["scan_limit"] += 1
                return
            scanned += 1
            if _ignored(rules, rel, is_dir=False):
                skipped["gitignored"] += 1
                continue
            if _SECRET_NAME.match(entry.name.lower()) and entry.name.lower() not in _SECRET_ALLOWED:
                skipped["secret"] += 1
                withheld.append(WithheldFile(rel, "secret file name"))
                continue
            if is_link and not _inside(entry.path, root_str):
                skipped["symlink_outside"] += 1
                continue
            try:
                size = entry.stat(follow_symlinks=True).st_size
            except OSError:
                skipped["unreadable"] += 1
                continue
            yield rel, entry.path, size
        # Reversed so the stack pops subdirectories in name order: deterministic output.
        stack.extend(reversed(subdirs))


def _inside(path: str, root: str) -> bool:
    real = os.path.realpath(path)
    return real == root or real.startswith(root.rstrip(os.sep) + os.sep)


def _rank(rel: str, size: int) -> tuple[int, int, int]:
    """Smaller is better: (kind, depth, size)."""
    name = rel.rsplit("/", 1)[-1].lower()
    depth = rel.count("/")
    if name.startswith("readme"):
        kind = 0
    elif name in _MANIFESTS or (name.startswith("requirements") and name.endswith(".txt")):
        kind = 1
    elif _DOC_NAMES.match(name) or name.endswith((".md", ".rst")):
        kind = 2
    elif name in _LOCKFILES or name.endswith((".min.js", ".min.css", ".map")):
        kind = 4
    else:
        kind = 3
    return kind, depth, size


def _read_text(path: str, limit: int) -> tuple[str, bool] | None:
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


# ---------------------------------------------------------------------------------------------------------
# .gitignore (the common subset: comments, blank lines, negation, dir/, anchors, *, ?, [..], **)


@dataclass(frozen=True)
class _IgnoreRule:
    regex: re.Pattern[str]
    negated: bool
    dir_only: bool


@dataclass(frozen=True)
class _IgnoreRules:
    base: str  # directory of the .gitignore, relative to the project root ("" for the root)
    rules: tuple[_IgnoreRule, ...]

    @classmethod
    def load(cls, path: str, base: str) -> _IgnoreRules | None:
        try:
            with open(path, encoding="utf-8", errors="replace") as fh:
                rules = tuple(r for line in fh if (r := _compile(line)) is not None)
        except OSError:
            return None
        return cls(base, rules) if rules else None

    def decide(self, rel: str, is_dir: bool) -> bool | None:
        """True: ignored; False: re-included by a negation; None: no rule here matches."""
        if self.base:
            if not rel.startswith(self.base + "/"):
                return None
            rel = rel[len(self.base) + 1 :]
        verdict: bool | None = None
        for rule in self.rules:  # the last matching rule wins, as in git
            if rule.dir_only and not is_dir:
                continue
            if rule.regex.match(rel):
                verdict = not rule.negated
        return verdict


def _ignored(rules: tuple[_IgnoreRules, ...], rel: str, *, is_dir: bool) -> bool:
    verdict = False
    for rule_set in rules:  # deeper .gitignore files come later and override shallower ones
        decided = rule_set.decide(rel, is_dir)
        if decided is not None:
            verdict = decided
    return verdict


def _compile(line: str) -> _IgnoreRule | None:
    pattern = line.rstrip("\n").rstrip("\r")
    if not pattern.strip() or pattern.startswith("#"):
        return None
    pattern = pattern.rstrip(" ")
    negated = pattern.startswith("!")
    if negated:
        pattern = pattern[1:]
    elif pattern.startswith("\\"):
        pattern = pattern[1:]  # "\#file" and "\!file" are literal
    dir_only = pattern.endswith("/")
    pattern = pattern.rstrip("/")
    if not pattern:
        return None
    # A slash at the start or in the middle anchors the pattern to the .gitignore's directory.
    anchored = "/" in pattern
    pattern = pattern.lstrip("/")
    body = _translate(pattern)
    prefix = "" if anchored else "(?:.*/)?"
    return _IgnoreRule(re.compile(f"^{prefix}{body}$"), negated, dir_only)


def _translate(pattern: str) -> str:
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[" and (end := pattern.find("]", i + 2)) != -1:
            inner = pattern[i + 1 : end]
            if inner.startswith("!"):
                inner = "^" + inner[1:]
            out.append("[" + inner.replace("\\", "\\\\") + "]")
            i = end + 1
        else:
            out.append(re.escape(c))
            i += 1
    return "".join(out)


def _tree(files: list[ProjectFile]) -> list[str]:
    """An indented tree of the given paths, directories first shown once."""
    lines: list[str] = []
    shown: set[str] = set()
    for path in sorted(f.path for f in files):
        parts = PurePosixPath(path).parts
        for depth in range(len(parts) - 1):
            prefix = "/".join(parts[: depth + 1])
            if prefix not in shown:
                shown.add(prefix)
                lines.append("  " * depth + parts[depth] + "/")
        lines.append("  " * (len(parts) - 1) + parts[-1])
    return lines
