"""The README's commands work in a plain clone: none outside its development section names this
workspace's ``../shared``, and the set-up command's inputs ship with the repository."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
DEVELOPMENT = "## Development in this workspace"


def _user_facing() -> str:
    """The README up to its development section (which is for this project's own workspace)."""
    assert DEVELOPMENT in README, f"the README needs its {DEVELOPMENT!r} section, last"
    head, tail = README.split(DEVELOPMENT, 1)
    assert "\n## " not in tail, "the development section must be the README's last"
    return head


def _code_blocks(text: str) -> list[str]:
    return re.findall(r"```(?:bash|console|sh)?\n(.*?)```", text, flags=re.S)


def test_no_user_facing_command_names_the_workspace() -> None:
    for block in _code_blocks(_user_facing()):
        for line in block.splitlines():
            assert "../shared" not in line, f"a README command depends on this workspace: {line.strip()}"
    assert "../shared" not in _user_facing()


def test_the_set_up_command_runs_on_files_in_the_clone() -> None:
    setup = README.split("## Set-up (two commands)", 1)[1].split("\n## ", 1)[0]
    first, second = [block.strip() for block in _code_blocks(setup)[:2]]
    assert first.startswith("pip install torch==2.13.0 . && bgcut ")
    inputs = first.split("&& bgcut ", 1)[1].split()[0]
    folder = ROOT / inputs
    assert folder.is_dir() and len([p for p in folder.iterdir() if p.suffix in (".jpg", ".png")]) >= 4
    assert (folder / "README.md").is_file(), "the sample photos need their licence and attribution"
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert second in ci, ".ci/run must call exactly the README's test command"
