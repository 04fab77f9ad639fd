"""The README, the tutorial and ``gpm-astro demo --help`` quote one measured demo run."""

import re
from pathlib import Path

import pytest

from gpm_astro.cli import main
from gpm_astro.demo import DEMO_MEASURED

ROOT = Path(__file__).resolve().parents[1]


def _runtime(text):
    """The first "N min SS s" in a text."""
    found = re.search(r"(\d+ min \d\d s)", text)
    assert found, "no runtime quoted"
    return found.group(1)


def test_one_runtime_is_quoted_everywhere(capsys):
    quoted = _runtime(DEMO_MEASURED)
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- demo-measured -->\n(.*?)\n<!-- /demo-measured -->", readme, re.S)
    assert block and _runtime(block.group(1)) == quoted
    assert _runtime((ROOT / "docs/demo_results.inc").read_text()) == quoted
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    assert quoted in " ".join(capsys.readouterr().out.split())
    # no other runtime of the demo quoted by hand
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.rst"))]:
        for claim in re.findall(r"demo[^.]{0,80}?~?\d+ (?:min|minutes)\b", path.read_text()):
            assert quoted.split()[0] in claim, f"{path.name}: {claim!r}"


def test_no_table_cell_is_a_lone_dash():
    """A list-table cell "-" renders as a bullet, not as "no value"."""
    for path in [*sorted((ROOT / "docs").glob("*.rst")), ROOT / "docs/demo_results.inc"]:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            assert not re.fullmatch(r"\s+(\* )?- -\s*", line), f"{path.name}:{number}"
