"""The .gitignore rules a project walk honours: the common subset (comments, blank lines, negation, dir/,
anchors, *, ?, [..], **), deeper files overriding shallower ones."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class _IgnoreRule:
    regex: re.Pattern[str]
    negated: bool
    dir_only: bool


@dataclass(frozen=True)
class IgnoreRules:
    base: str  # directory of the .gitignore, relative to the project root ("" for the root)
    rules: tuple[_IgnoreRule, ...]

    @classmethod
    def load(cls, path: str, base: str) -> IgnoreRules | None:
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


def ignored(rules: tuple[IgnoreRules, ...], rel: str, *, is_dir: bool) -> bool:
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
