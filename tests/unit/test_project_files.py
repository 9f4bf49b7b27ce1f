"""actors.project_files: the path checks that keep tasks inside the configured roots, and the budgeted,
ignore-aware walk that picks what the model sees."""

from __future__ import annotations

import os
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from bgtasks.actors.errors import ProjectPathError
from bgtasks.actors.project_files import collect_project_files, resolve_project_path


def _write(root: Path, rel: str, content: str | bytes = "x\n") -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def _paths(root: Path, **kwargs: Any) -> list[str]:
    return [f.path for f in collect_project_files(root, **kwargs).files]


# ---------------------------------------------------------------------------------------------------------
# resolve_project_path


@pytest.fixture
def roots(tmp_path: Path) -> tuple[Path, Path]:
    allowed = tmp_path / "projects"
    (allowed / "app").mkdir(parents=True)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    return allowed, outside


def test_path_inside_a_root_resolves_to_the_real_directory(roots: tuple[Path, Path]) -> None:
    allowed, _ = roots
    assert (
        resolve_project_path(str(allowed / "app" / "." / "sub" / ".."), [allowed])
        == (allowed / "app").resolve()
    )


def test_dotdot_cannot_escape_the_roots(roots: tuple[Path, Path]) -> None:
    allowed, outside = roots
    assert (allowed / ".." / "elsewhere").resolve() == outside
    with pytest.raises(ProjectPathError, match="outside the allowed project roots"):
        resolve_project_path(str(allowed / "app" / ".." / ".." / "elsewhere"), [allowed])


def test_symlink_out_of_the_roots_is_refused(roots: tuple[Path, Path]) -> None:
    allowed, outside = roots
    (allowed / "sneaky").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ProjectPathError, match="outside the allowed project roots"):
        resolve_project_path(str(allowed / "sneaky"), [allowed])


def test_a_root_given_through_a_symlink_still_contains_its_projects(
    roots: tuple[Path, Path], tmp_path: Path
) -> None:
    allowed, _ = roots
    link = tmp_path / "link-to-projects"
    link.symlink_to(allowed, target_is_directory=True)
    assert resolve_project_path(str(allowed / "app"), [link]) == (allowed / "app").resolve()


def test_missing_path_is_named(roots: tuple[Path, Path]) -> None:
    allowed, _ = roots
    with pytest.raises(ProjectPathError, match="does not exist"):
        resolve_project_path(str(allowed / "nope"), [allowed])


def test_file_is_not_a_project(roots: tuple[Path, Path]) -> None:
    allowed, _ = roots
    _write(allowed, "app/README.md")
    with pytest.raises(ProjectPathError, match="is not a directory"):
        resolve_project_path(str(allowed / "app" / "README.md"), [allowed])


def test_relative_path_and_missing_roots_are_refused(roots: tuple[Path, Path]) -> None:
    allowed, _ = roots
    with pytest.raises(ProjectPathError, match="is relative"):
        resolve_project_path("app", [allowed])
    with pytest.raises(ProjectPathError, match="no project roots are configured"):
        resolve_project_path(str(allowed / "app"), [])
    with pytest.raises(ProjectPathError, match="empty"):
        resolve_project_path("", [allowed])


def test_project_path_error_is_a_value_error() -> None:
    assert issubclass(ProjectPathError, ValueError)


# ---------------------------------------------------------------------------------------------------------
# collect_project_files


def test_important_files_come_first_then_shallow_then_small(tmp_path: Path) -> None:
    _write(tmp_path, "src/pkg/deep.py", "a = 1\n")
    _write(tmp_path, "big.py", "b = 2\n" * 100)
    _write(tmp_path, "small.py", "c = 3\n")
    _write(tmp_path, "pyproject.toml", "[project]\nname = 'x'\n")
    _write(tmp_path, "README.md", "# X\n")
    _write(tmp_path, "package-lock.json", "{}\n")
    _write(tmp_path, "docs/guide.md", "guide\n")

    assert _paths(tmp_path) == [
        "README.md",
        "pyproject.toml",
        "docs/guide.md",
        "small.py",
        "big.py",
        "src/pkg/deep.py",
        "package-lock.json",
    ]


def test_dependency_vcs_cache_and_virtualenv_dirs_are_skipped(tmp_path: Path) -> None:
    _write(tmp_path, "app.py")
    for rel in [
        ".git/config",
        "node_modules/x/index.js",
        ".venv/lib/site.py",
        "venv/bin/activate",
        "src/__pycache__/m.pyc",
        "dist/app.whl",
        "build/lib/app.py",
        "myenv/pyvenv.cfg",
        "myenv/lib/a.py",
    ]:
        _write(tmp_path, rel)  # fmt: skip

    snapshot = collect_project_files(tmp_path)
    assert [f.path for f in snapshot.files] == ["app.py"]
    assert snapshot.skipped["ignored_dir"] == 8
    assert snapshot.total_files_seen == 1


def test_gitignore_common_patterns(tmp_path: Path) -> None:
    _write(
        tmp_path,
        ".gitignore",
        "# comment\n\n*.log\n!keep.log\n/out\ntmp/\nsecret.txt\ndocs/**/draft-*.md\n**/generated/*.py\n",
    )
    kept = ["app.py", "keep.log", "src/out/ok.py", "src/tmp.py", "docs/final.md", "docs/a/b/final.md"]
    dropped = ["debug.log", "src/deep/trace.log", "out/x.py", "tmp/a.py", "src/tmp/b.py", "secret.txt",
               "src/secret.txt", "docs/draft-1.md", "docs/a/b/draft-2.md", "x/generated/g.py"]  # fmt: skip
    for rel in kept + dropped:
        _write(tmp_path, rel)

    snapshot = collect_project_files(tmp_path)
    assert sorted(f.path for f in snapshot.files) == sorted([*kept, ".gitignore"])
    assert snapshot.skipped["gitignored"] > 0


def test_nested_gitignore_applies_below_its_directory(tmp_path: Path) -> None:
    _write(tmp_path, "sub/.gitignore", "*.txt\n")
    _write(tmp_path, "sub/a.txt")
    _write(tmp_path, "top.txt")
    assert sorted(_paths(tmp_path)) == ["sub/.gitignore", "top.txt"]


def test_binary_and_non_utf8_files_are_skipped(tmp_path: Path) -> None:
    _write(tmp_path, "image.png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    _write(tmp_path, "latin1.txt", "café".encode("latin-1"))
    _write(tmp_path, "late-nul.bin", b"a" * 9000 + b"\x00")  # NUL past the sniff window, still valid UTF-8
    _write(tmp_path, "ok.txt", "café ✓\n")

    snapshot = collect_project_files(tmp_path)
    assert sorted(f.path for f in snapshot.files) == ["late-nul.bin", "ok.txt"]
    assert snapshot.skipped["binary"] == 2
    assert snapshot.total_files_seen == 4


def test_large_file_is_capped_and_marked_truncated(tmp_path: Path) -> None:
    _write(tmp_path, "big.py", "x" * 10_000)
    _write(tmp_path, "accents.txt", "é" * 100)  # two bytes each: the cap falls inside a character

    files = {f.path: f for f in collect_project_files(tmp_path, max_file_bytes=51).files}
    assert files["big.py"].content == "x" * 51 and files["big.py"].truncated
    assert files["big.py"].size == 10_000
    assert files["accents.txt"].content == "é" * 25 and files["accents.txt"].truncated


def test_budget_stops_content_but_not_counting(tmp_path: Path) -> None:
    for i in range(10):
        _write(tmp_path, f"f{i}.py", "y" * 1_000)

    snapshot = collect_project_files(tmp_path, budget_chars=2_500)
    assert snapshot.content_chars == 2_500
    assert [f.truncated for f in snapshot.files] == [False, False, True]
    assert snapshot.total_files_seen == 10
    assert snapshot.skipped["budget"] == 7


def test_symlinked_dirs_are_not_followed_and_files_only_inside_the_root(tmp_path: Path) -> None:
    project, outside = tmp_path / "project", tmp_path / "outside"
    _write(outside, "passwords.txt", "hunter2")
    _write(project, "real/inner.py", "inner\n")
    (project / "linked-out").symlink_to(outside, target_is_directory=True)
    (project / "linked-in").symlink_to(project / "real", target_is_directory=True)
    (project / "loop").symlink_to(project, target_is_directory=True)
    (project / "out.txt").symlink_to(outside / "passwords.txt")
    (project / "alias.py").symlink_to(project / "real" / "inner.py")
    (project / "dangling.txt").symlink_to(project / "missing")

    snapshot = collect_project_files(project)
    assert sorted(f.path for f in snapshot.files) == ["alias.py", "real/inner.py"]
    assert snapshot.skipped["symlinked_dir"] == 3
    assert snapshot.skipped["symlink_outside"] == 1
    assert all("hunter2" not in f.content for f in snapshot.files)


def test_secret_files_are_never_read(tmp_path: Path) -> None:
    _write(tmp_path, ".env", "OPENAI_API_KEY=sk-live")
    _write(tmp_path, ".env.production", "X=1")
    _write(tmp_path, "deploy/id_rsa", "-----BEGIN")
    _write(tmp_path, ".env.example", "OPENAI_API_KEY=")
    assert _paths(tmp_path) == [".env.example"]


@pytest.mark.slow  # creating 10,000 files takes seconds on some filesystems; the walk itself takes ~0.1 s
def test_ten_thousand_files_stay_within_budget_and_memory(tmp_path: Path) -> None:
    body = "print('hello')\n" * 20
    for d in range(100):
        directory = tmp_path / f"pkg{d:03d}"
        directory.mkdir()
        for f in range(100):
            (directory / f"mod{f:03d}.py").write_text(body)
    _write(tmp_path, "README.md", "# Big\n")

    tracemalloc.start()
    try:
        snapshot = collect_project_files(tmp_path, budget_chars=50_000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert snapshot.total_files_seen == 10_001
    assert snapshot.content_chars <= 50_000
    assert snapshot.files[0].path == "README.md"
    assert len(snapshot.files) + snapshot.skipped["budget"] == 10_001
    assert peak < 8 * 1024 * 1024, f"peak {peak} bytes: the walk should not hold the tree in memory"
    # The files, their markers and the tree, plus the names of files not shown (a tenth of the budget) and
    # the per-directory counts.
    assert len(snapshot.as_prompt()) < 50_000 + 25_000


def test_scan_limit_stops_the_walk(tmp_path: Path) -> None:
    for i in range(50):
        _write(tmp_path, f"f{i:02d}.txt")
    snapshot = collect_project_files(tmp_path, max_files_scanned=20)
    assert snapshot.total_files_seen == 20
    assert snapshot.skipped["scan_limit"] == 1


def test_unreadable_directory_is_counted_not_fatal(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads every directory")
    _write(tmp_path, "ok.py")
    locked = tmp_path / "locked"
    _write(locked, "hidden.py")
    locked.chmod(0)
    try:
        snapshot = collect_project_files(tmp_path)
    finally:
        locked.chmod(0o755)
    assert [f.path for f in snapshot.files] == ["ok.py"]
    assert snapshot.skipped["unreadable"] == 1


def test_prompt_shows_a_tree_and_every_included_file(tmp_path: Path) -> None:
    _write(tmp_path, "README.md", "# Demo\n")
    _write(tmp_path, "src/app/main.py", "print('hi')\n")
    _write(tmp_path, "src/big.txt", "z" * 100)

    prompt = collect_project_files(tmp_path, max_file_bytes=10).as_prompt()
    assert prompt.startswith(
        "Project files (3 of 3 shown):\nREADME.md\nsrc/\n  app/\n    main.py\n  big.txt\n"
    )
    assert "===== README.md (truncated) =====" not in prompt
    assert "===== README.md =====\n# Demo\n===== end of README.md =====" in prompt
    assert "===== src/big.txt (truncated) =====\nzzzzzzzzzz\n" in prompt


def test_the_scan_cap_and_the_budget_are_shared_by_every_top_level_directory(tmp_path: Path) -> None:
    for d in range(20):
        for f in range(50):
            _write(tmp_path, f"packages/p{d:02d}/src/m{f:02d}.py", f"x = {f}\n" * 20)
    _write(tmp_path, "README.md", "# Mono\n")
    snapshot = collect_project_files(tmp_path, max_files_scanned=201, budget_chars=6_000, find_secrets=None)
    assert snapshot.scan_limit_reached and snapshot.skipped["scan_limit"] == 1
    assert [d.path for d in snapshot.directories] == [f"packages/p{d:02d}" for d in range(20)]
    assert {d.files_seen for d in snapshot.directories} == {10}, "an alphabetical prefix would see p00-p03 only"
    assert all(d.files_read >= 1 for d in snapshot.directories)
    assert snapshot.files[0].path == "README.md"
    prompt = snapshot.as_prompt()
    assert "scanning stopped at 201" in prompt and "Files not shown (over the budget): packages/p" in prompt


def test_data_files_rank_after_source_whatever_their_depth(tmp_path: Path) -> None:
    _write(tmp_path, "measurements.csv", "t,v\n" + "1,2\n" * 100)
    _write(tmp_path, "dump.json", "[" + "1," * 20_000 + "1]")
    _write(tmp_path, "tsconfig.json", "{}\n")
    _write(tmp_path, "src/deep/app.py", "print(1)\n")
    assert _paths(tmp_path, find_secrets=None) == ["tsconfig.json", "src/deep/app.py", "measurements.csv",
                                                   "dump.json"]


def test_files_with_secret_contents_are_withheld_and_named(tmp_path: Path) -> None:
    _write(tmp_path, "app.py", "print(1)\n")
    _write(tmp_path, "deploy.yaml", "aws_secret_access_key: wJalrXUtnFEMI/K7MDENG/bPxRfiCYzq8LMKEY\n")
    _write(tmp_path, ".env.example", "GITHUB_TOKEN=ghp_16C7e42F292c6912E7710c838347Ae178B4a\n")
    snapshot = collect_project_files(tmp_path)
    assert [f.path for f in snapshot.files] == ["app.py"]
    assert [w.path for w in snapshot.withheld] == [".env.example", "deploy.yaml"]
    assert "GitHub Token" in snapshot.withheld[0].reason and snapshot.skipped["secret_content"] == 2
    assert "withheld because they hold secrets: .env.example, deploy.yaml" in snapshot.as_prompt()
