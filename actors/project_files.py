"""Safe, budgeted reading of a project directory for the per-project task types: which files the model sees,
chosen lazily within a character budget, never outside the configured roots."""

from __future__ import annotations

import heapq
import itertools
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from bgtasks.actors.errors import ProjectPathError
from bgtasks.actors.project_walk import ProjectWalk, WithheldFile, file_rank, read_text
from bgtasks.actors.secret_scan import secret_kinds

__all__ = ["DirectoryCount", "ProjectFile", "ProjectSnapshot", "WithheldFile", "collect_project_files", "resolve_project_path"]

# (relative path, absolute path, the text that would be sent, is it the whole file) -> kinds of secret found.
SecretFinder = Callable[..., list[str]]

# Balanced selection: the root's own best files read first, and the least a group's first file is cut to.
_ROOT_FIRST = 3
_MIN_SHARE = 300
# How many withheld files the prompt names (the result lists them all), how many characters of names of files
# not shown it carries, and how many top-level directories it counts.
_WITHHELD_NAMES = 50
_NOT_SHOWN_NAMES_CHARS = 10_000
_DIRECTORIES_LISTED = 300
# Keep candidates worth twice the budget: some turn out binary or undecodable only when read.
_CANDIDATE_SLACK = 2


@dataclass(frozen=True)
class ProjectFile:
    path: str  # relative to the project root, posix separators
    size: int  # bytes on disk
    content: str
    truncated: bool  # content is a prefix: the file exceeded max_file_bytes or the remaining budget



@dataclass(frozen=True)
class DirectoryCount:
    """A top-level directory of the project (below single-directory chains such as src/): files found, read."""

    path: str
    files_seen: int
    files_read: int


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
    # The walk stops after scan_limit files; scan_limit_reached says it did (the project is larger).
    scan_limit: int = 0
    scan_limit_reached: bool = False
    directories: list[DirectoryCount] = field(default_factory=list)
    # Names of files not read (over the budget) for the model: candidates left unread, best first, then a
    # sample (about _NOT_SHOWN_NAMES_CHARS) of those dropped during the walk, in its balanced order.
    not_shown: list[str] = field(default_factory=list)

    @property
    def content_chars(self) -> int:
        return sum(len(f.content) for f in self.files)

    def as_prompt(self) -> str:
        """A tree of the included files, what was not shown (names within a budget, counts per directory),
        then each file's contents between markers."""
        omitted = self.total_files_seen - len(self.files)
        lines = [f"Project files ({len(self.files)} of {self.total_files_seen} shown):", *_tree(self.files)]
        if self.scan_limit_reached:
            lines.append(f"(the project has more files: scanning stopped at {self.scan_limit:,}, spread evenly "
                         "over its top-level directories)")
        if omitted > 0:
            lines.append(f"({omitted} more files not shown: over the budget, binary or not UTF-8)")
        if self.not_shown:
            names, used = [], 0
            names_budget = min(_NOT_SHOWN_NAMES_CHARS, self.budget_chars // 10)  # a tenth of the content's
            for name in self.not_shown:
                if used + len(name) > names_budget:
                    break
                names.append(name)
                used += len(name) + 2
            more = len(self.not_shown) - len(names)
            lines.append("Files not shown (over the budget): " + ", ".join(names)
                         + (f" and {more} more" if more else ""))
        if len(self.directories) > 1:
            counts = [f"{d.path}/ {d.files_read} of {d.files_seen}" for d in self.directories[:_DIRECTORIES_LISTED]]
            more = len(self.directories) - len(counts)
            lines.append("Files shown per top-level directory: " + "; ".join(counts)
                         + (f"; and {more} more directories" if more else ""))
        if self.withheld:
            names_w = ", ".join(w.path for w in self.withheld[:_WITHHELD_NAMES])
            more = len(self.withheld) - _WITHHELD_NAMES
            lines.append(f"(withheld because they hold secrets: {names_w}{f' and {more} more' if more > 0 else ''})")
        for f in self.files:
            note = " (truncated)" if f.truncated else ""
            lines += [
                "",
                f"===== {f.path}{note} =====",
                f.content.rstrip("\n"),
                f"===== end of {f.path} =====",
            ]
        return "\n".join(lines) + "\n"


def resolve_project_path(path: str, roots: list[Path] | None, *, reveal_roots: bool = False) -> Path:
    """The real directory ``path`` names, provided it lies inside one of ``roots`` after resolving ``..`` and
    symlinks. Containment is checked first, so the error for a path outside the roots says nothing about it;
    the roots themselves are named only with ``reveal_roots`` (to a superuser). ``roots`` None: any directory
    this process can read (the local user in development mode)."""
    if not path or not path.strip():
        raise ProjectPathError("project path is empty: give the absolute path of the project directory")
    if roots is not None and not roots:
        raise ProjectPathError("no project roots are configured: an operator sets BGTASKS_PROJECT_ROOTS to the "
                               "directories tasks may read")
    given = Path(path).expanduser()
    if not given.is_absolute():
        # Relative paths would depend on the worker's working directory, which the user cannot see.
        raise ProjectPathError(f"project path {path!r} is relative: give the absolute path of the project")
    resolved = given.resolve()
    if roots is not None:
        real_roots = [Path(r).expanduser().resolve() for r in roots]
        if not any(resolved.is_relative_to(r) for r in real_roots):
            which = f" ({', '.join(str(r) for r in real_roots)})" if reveal_roots else ""
            raise ProjectPathError(
                f"project path {path!r} is outside the allowed project roots{which}, set in "
                "BGTASKS_PROJECT_ROOTS: move the project under a root or ask an operator to add its parent"
            )
    if not resolved.exists():
        raise ProjectPathError(f"project path {path!r} does not exist")
    if not resolved.is_dir():
        raise ProjectPathError(f"project path {path!r} is not a directory")
    if roots is None and not os.access(resolved, os.R_OK | os.X_OK):
        raise ProjectPathError(f"project path {path!r} is not readable by the service")
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

    Balanced, not alphabetical: the walk takes the top-level directories (below a chain of single
    directories such as ``src/`` or ``packages/``) in turns, so ``max_files_scanned`` cuts every one short
    rather than the last ones off; the selection gives each of them its best file before any gets a second
    (first files cut to a fair share of half the budget), after the root's own best three.

    Every file read is scanned for secrets (``find_secrets``, detect-secrets by default) before it is kept;
    one with any finding is withheld whole (a private key's body spans lines no detector flags one by one)
    and its budget goes to the next candidate.

    Memory stays bounded whatever the tree's size: the walk keeps one directory listing per top-level
    directory and only the best candidates of each; symlinked directories are never followed; symlinked
    files are read only when their target is inside ``root``.
    """
    real_root = Path(root).resolve()
    walk = ProjectWalk(str(real_root), max_files_scanned)
    seen: Counter[str] = Counter()
    # Per group, a max-heap (by negated rank) of its best candidates; the worst is evicted once the rest cover
    # the group's share, so a 100,000-file tree costs no more memory than a small one.
    heaps: dict[str, list[_Candidate]] = {}
    costs: Counter[str] = Counter()
    tiebreak = itertools.count()
    keep_cost = budget_chars * _CANDIDATE_SLACK
    evicted_names: list[str] = []
    evicted_chars = 0

    for rel, full, size in walk.files():
        group = walk.group_of(rel)
        seen[group] += 1
        rank = file_rank(rel, size)
        heap = heaps.setdefault(group, [])
        heapq.heappush(heap, (tuple(-x for x in rank), -next(tiebreak), rel, full, size))
        costs[group] += _cost(size, max_file_bytes)
        # A group keeps candidates worth its share of the slack; a tiny file counts as _MIN_SHARE, so the
        # number kept stays bounded however small the files and however many the groups.
        share = keep_cost if not group else max(keep_cost // max(1, walk.groups), 3 * _MIN_SHARE)
        while heap and costs[group] - _cost(heap[0][4], max_file_bytes) >= share:
            evicted = heapq.heappop(heap)
            costs[group] -= _cost(evicted[4], max_file_bytes)
            walk.skipped["budget"] += 1
            if evicted_chars < _NOT_SHOWN_NAMES_CHARS:  # a sample of names, in the walk's balanced order
                evicted_names.append(evicted[2])
                evicted_chars += len(evicted[2]) + 2

    chosen, unread = _select(heaps, walk, budget_chars, max_file_bytes, find_secrets)
    walk.skipped["budget"] += len(unread)
    read_per_group = Counter(walk.group_of(f.path) for _key, f in chosen)
    return ProjectSnapshot(
        root=str(real_root),
        files=[f for _key, f in sorted(chosen, key=lambda c: c[0], reverse=True)],  # best rank first
        total_files_seen=sum(seen.values()),
        skipped=dict(walk.skipped),
        budget_chars=budget_chars,
        withheld=sorted(walk.withheld, key=lambda w: w.path),
        scan_limit=max_files_scanned,
        scan_limit_reached=walk.limit_reached,
        directories=[DirectoryCount(g, seen[g], read_per_group[g]) for g in sorted(seen) if g],
        not_shown=[*unread, *evicted_names],
    )


def _cost(size: int, max_file_bytes: int) -> int:
    return max(min(size, max_file_bytes), _MIN_SHARE)


_Candidate = tuple[tuple[int, ...], int, str, str, int]  # (negated rank, negated scan order, rel, full, size)


def _select(heaps: dict[str, list[_Candidate]], walk: ProjectWalk, budget_chars: int, max_file_bytes: int,
            find_secrets: SecretFinder | None) -> tuple[list[tuple[tuple[tuple[int, ...], int], ProjectFile]], list[str]]:
    """Read candidates in balanced order until the budget is spent: the root's best three, then each group's
    best (cut to a fair share of half the budget), then round-robin. (chosen with their sort keys, unread paths)"""
    queues = {g: sorted(h, reverse=True) for g, h in heaps.items()}  # best first
    others = sorted(g for g in queues if g)
    share = max(_MIN_SHARE, min(max_file_bytes, budget_chars // (2 * len(others)))) if others else max_file_bytes
    chosen: list[tuple[tuple[tuple[int, ...], int], ProjectFile]] = []
    left = budget_chars

    def take(group: str, limit: int) -> bool:
        """Read the group's next readable, secret-free candidate; False when the group has none left."""
        nonlocal left
        queue = queues.get(group) or []
        while queue and left > 0:
            neg_rank, neg_n, rel, full, size = queue.pop(0)
            read = read_text(full, min(limit, left))
            if read is None:
                walk.skipped["binary"] += 1
                continue
            text, cut = read
            kinds = find_secrets(rel, full, text, whole_file=not cut) if find_secrets is not None else []
            if kinds:
                walk.skipped["secret_content"] += 1
                walk.withheld.append(WithheldFile(rel, ", ".join(kinds)))
                continue
            chosen.append(((neg_rank, neg_n), ProjectFile(path=rel, size=size, content=text, truncated=cut)))
            left -= len(text)
            return True
        return False

    for _ in range(_ROOT_FIRST):
        take("", max_file_bytes)
    for group in others:
        take(group, share)
    active = ["", *others]
    while left > 0 and active:
        active = [g for g in active if take(g, max_file_bytes)]
    unread = [c[2] for q in queues.values() for c in q]
    return chosen, unread



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
