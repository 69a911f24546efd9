"""The user's documents: README.md under 12 KB with its picture, every link and image in README.md and
docs/ present, every `spnas` command shown in them known to the CLI (the subcommand and each option it
names, checked against the argparse parser that `--help` prints), the cheap ones run, and no word about
how the project is developed."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from spnas.cli.main import build_parser, main

ROOT = Path(__file__).parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
#: commands cheap enough to run as shown (seconds, no data, nothing written)
RUN_AS_SHOWN = ("spnas space show small", "spnas arch show spnas-pixel1 --space imagenet")


def shown_commands(page: Path) -> list[str]:
    """The `spnas ...` command lines of a page's bash blocks, continuations joined, comments dropped."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", page.read_text(), re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" # ")[0].split("  #")[0].strip()
            if "spnas " not in line or line.startswith("#") or "..." in line:
                continue
            tail = line[line.index("spnas "):]
            if line.startswith(("spnas ", "torchrun", "OMP_NUM_THREADS")) or "&& spnas" in line:
                commands.append(tail.split(" && ")[0])
    return commands


def _subparser(parser, words: list[str]):
    """The parser of the deepest subcommand that ``words`` name, and the words after it."""
    while words:
        subs = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
        if not subs or words[0] not in subs[0].choices:
            break
        parser, words = subs[0].choices[words[0]], words[1:]
    return parser, words


def test_the_readme_is_short_and_shows_its_picture():
    text = (ROOT / "README.md").read_text()
    assert len(text.encode()) <= 12 * 1024, len(text.encode())
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert images and all((ROOT / path).is_file() for path in images), images
    assert "{{" not in text  # every placeholder filled


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_link_and_image_of_a_page_exists(page):
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", page.read_text()):
        if target.startswith("http"):
            continue
        assert (page.parent / target).exists(), f"{page.name}: {target}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_command_shown_names_a_subcommand_and_options_that_exist(page):
    parser = build_parser()
    commands = shown_commands(page)
    assert commands or page.name in ("layout.md", "measurements.md", "faithful-mode.md", "files-and-resume.md"), \
        f"{page.name} shows no spnas command"
    for command in commands:
        words = shlex.split(command)[1:]
        sub, rest = _subparser(parser, words)
        assert sub is not parser, f"{page.name}: {command}: no such subcommand"
        known = set(sub._option_string_actions)
        for word in rest:
            option = word.split("=")[0]
            if option.startswith("--"):
                assert option in known, f"{page.name}: {command}: {option} is not an option of '{sub.prog}'"


def test_the_readme_and_docs_show_the_commands_they_describe():
    shown = {c for page in PAGES for c in shown_commands(page)}
    for needed in ("spnas run", "spnas latency profile", "spnas latency validate", "spnas latency bundle",
                   "spnas search", "spnas train", "spnas export", "spnas sweep"):
        assert any(c.startswith(needed) for c in shown), needed


@pytest.mark.parametrize("command", RUN_AS_SHOWN)
def test_the_cheap_commands_run_as_shown(command, capsys):
    assert any(command in c for page in PAGES for c in shown_commands(page)), f"{command} is no longer shown"
    assert main(shlex.split(command)[1:]) == 0
    assert capsys.readouterr().out.strip()


def test_no_page_talks_about_how_the_project_is_made():
    for page in [*PAGES, ROOT / "BENCHMARKS.md"]:
        text = page.read_text().lower()
        for word in ("session", "lent to", "the previous run of this project"):
            assert word not in text, f"{page.name}: {word!r}"
