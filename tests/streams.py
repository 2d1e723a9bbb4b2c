"""What the tests read from a command's stderr (tests/ is on the import path: `from streams import ...`)."""

import re

# A batch job's progress (scaling.planning.rounds.round_line), logged once per round when stderr is no terminal.
PROGRESS = re.compile(r"^scaling: \d{4}-\d\d-\d\d \d\d:\d\d:\d\d round \d+: .*\n?", re.M)


def without_progress(err: str) -> str:
    """stderr less the per-round progress lines: what is left are the warnings and errors."""
    return PROGRESS.sub("", err)
