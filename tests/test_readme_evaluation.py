"""The "Evaluate and diagnose" README section's Python example runs and reports named numbers."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEADING = "## Evaluate and diagnose"


def evaluation_snippet() -> str:
    readme = (ROOT / "README.md").read_text()
    assert HEADING in readme
    match = re.search(r"```python\n(.*?)```", readme.split(HEADING, 1)[1], flags=re.S)
    assert match, f"no ```python block under {HEADING!r}"
    return match.group(1)


def test_evaluation_snippet_names_its_extractor(capsys):
    namespace = {}
    exec(compile(evaluation_snippet(), "README evaluation example", "exec"), namespace)
    out = capsys.readouterr().out
    assert re.search(r"held-out accuracy 0\.9[7-9]\d|held-out accuracy 1\.000", out), out
    fid = float(re.search(r"FID\[classifier:digits\] ([\d.]+)", out).group(1))
    assert fid > 10 * 1.0  # an untrained G is far from the data (the real-data floor is below 1)
    assert namespace["real"].shape == (1797, 128)
