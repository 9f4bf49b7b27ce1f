"""docs/configuration.md names every setting: the list comes from `Settings` itself (and the environment
variables the command line reads), so a new setting without a row in the table fails here."""

from __future__ import annotations

import re
from pathlib import Path

from bgtasks.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "configuration.md"
CLI_VARIABLES = ("BGTASKS_URL", "BGTASKS_API_KEY")  # read by service/client.py, not by Settings


def documented() -> set[str]:
    """The variables named in the first column of the tables in docs/configuration.md."""
    names: set[str] = set()
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if line.startswith("| `"):
            first_column = line.split("|")[1]
            names.update(re.findall(r"`([A-Z][A-Z0-9_]*)`", first_column))
    return names


def test_every_setting_has_a_row_in_configuration_md() -> None:
    settings = {(field.alias or name).upper() for name, field in Settings.model_fields.items()}
    assert len(settings) > 40  # the list really comes from Settings
    missing = sorted(settings - documented())
    assert not missing, f"settings missing from docs/configuration.md: {missing}"


def test_the_command_line_variables_have_a_row_too() -> None:
    client = (ROOT / "service" / "client.py").read_text(encoding="utf-8")
    read = set(re.findall(r"os\.environ\.get\(\"([A-Z_]+)\"\)", client))
    assert read == set(CLI_VARIABLES), read
    missing = sorted(read - documented())
    assert not missing, f"variables missing from docs/configuration.md: {missing}"
