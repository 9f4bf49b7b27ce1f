"""Content-based secret detection for project files, before anything leaves for the model provider: the
well-kept detect-secrets scanner (private keys, cloud and service tokens, keyword assignments, high-entropy
strings), configured once per process. File *names* that hold secrets are refused earlier (project_files)."""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import PurePosixPath

from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
from detect_secrets.core.scan import scan_file
from detect_secrets.settings import configure_settings_from_baseline

__all__ = ["secret_kinds"]

# Public IP addresses are not credentials; every other detector runs.
_SKIPPED_PLUGINS = frozenset({"IPPublicDetector"})
# detect-secrets trusts files named like templates (`.example`) to hold fakes; we do not: a "fake" token in a
# checked-in `.env.example` is often a real one. Such a file is scanned as the file it templates.
_TEMPLATE_SUFFIXES = (".example", ".sample", ".template", ".dist", ".tmpl", ".tpl")
_configured = False
_lock = threading.Lock()


def _configure() -> None:
    """detect-secrets keeps its settings in a process-wide singleton; set them once, never per call (changing
    them while another thread scans would race)."""
    global _configured
    with _lock:
        if _configured:
            return
        classes: list[type] = list(get_mapping_from_secret_type_to_class().values())
        plugins = [{"name": cls.__name__} for cls in classes if cls.__name__ not in _SKIPPED_PLUGINS]
        configure_settings_from_baseline({"plugins_used": plugins})
        _configured = True


def secret_kinds(rel_path: str, full_path: str, text: str, *, whole_file: bool) -> list[str]:
    """The kinds of secret found in ``text`` (what would be sent of the file at ``rel_path``), e.g.
    ``["Private Key", "Secret Keyword"]``; empty when none. ``whole_file``: ``text`` is the entire file, so the
    file itself is scanned; otherwise the part sent is, from a temporary file of the same name (detect-secrets
    picks its rules by file type: YAML, JSON, INI, .env …; `.env.example` is scanned as `.env`)."""
    _configure()
    name = PurePosixPath(rel_path).name
    templated = name.lower().endswith(_TEMPLATE_SUFFIXES) and name.count(".") > 1
    if whole_file and not templated:
        return _kinds(full_path)
    if templated:
        name = name.rsplit(".", 1)[0]
    with tempfile.TemporaryDirectory(prefix="bgtasks-scan-") as tmp:
        path = os.path.join(tmp, name)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
        return _kinds(path)


def _kinds(path: str) -> list[str]:
    return sorted({secret.type for secret in scan_file(path)})


# Configured at import (once per process, before any worker thread scans), not on first use.
_configure()
