"""The README and docs/ hold together: the README stays an entry point, every relative link and image
resolves (anchors included, so they work on a forge without the site), every page is in the site's nav,
and every `seqae` command written in them names a subcommand and options the CLI has."""

import pathlib
import re
import shlex
import unicodedata

import pytest
import typer
import yaml

from seqae.cli import app

REPO = pathlib.Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
PAGES = sorted(DOCS.glob("*.md"))
FILES = [REPO / "README.md", *PAGES]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def prose(text: str) -> str:
    """The text outside fenced code blocks and inline code."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", text)


def slug(heading: str) -> str:
    """The anchor Python-Markdown's toc extension gives a heading (its default slugify, on the text
    as rendered: code spans and links reduced to their text)."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "").replace("*", "")
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def anchors(path: pathlib.Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.S | re.M)
    return {slug(m) for m in re.findall(r"^#{1,6} (.+?)\s*$", text, flags=re.M)}


def test_the_readme_is_an_entry_point():
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines; keep it at most 200 and move detail into docs/"


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_resolves(path):
    broken = []
    for target in LINK.findall(prose(path.read_text())):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        file, _, anchor = target.partition("#")
        dest = (path.parent / file).resolve() if file else path
        if not dest.is_file():
            broken.append(f"{target}: no file {dest.relative_to(REPO) if dest.is_relative_to(REPO) else dest}")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading with the anchor #{anchor} in {dest.relative_to(REPO)}")
    assert broken == [], f"{path.relative_to(REPO)}: " + "; ".join(broken)


def test_the_readme_links_into_the_docs_relatively():
    targets = LINK.findall(prose((REPO / "README.md").read_text()))
    assert any(t.startswith("docs/") and t.endswith(".md") for t in targets)
    assert not [t for t in targets if t.startswith("/") or "site/" in t]


def nav_files(nav) -> list[str]:
    found = []
    for item in nav:
        for value in (item.values() if isinstance(item, dict) else [item]):
            found.extend(nav_files(value) if isinstance(value, list) else [value])
    return found


def test_every_page_is_in_the_nav_and_every_nav_entry_is_a_page():
    config = yaml.safe_load((REPO / "mkdocs.yml").read_text())
    nav = nav_files(config["nav"])
    assert sorted(nav) == sorted(p.name for p in PAGES)
    assert len(nav) == len(set(nav))


def test_the_site_builds_offline():
    """No web fonts (Material fetches them from the network unless ``font: false``), no social cards."""
    config = yaml.safe_load((REPO / "mkdocs.yml").read_text())
    assert config["theme"]["font"] is False
    plugins = [p if isinstance(p, str) else next(iter(p)) for p in config.get("plugins", [])]
    assert not {"social", "optimize", "privacy"} & set(plugins)


def cli_options() -> dict[str, set[str]]:
    """Each subcommand path (``train``, ``datasets ecg5000``) and the options it takes, the main ones
    (``--quiet``) included."""
    root = typer.main.get_command(app)
    main = {opt for param in root.params for opt in param.opts + param.secondary_opts}
    found: dict[str, set[str]] = {}

    def visit(command, path: str) -> None:  # typer 0.29 vendors click: groups known by their commands
        if getattr(command, "commands", None):
            for name, sub in command.commands.items():
                visit(sub, f"{path} {name}".strip())
        else:
            found[path] = main | {o for p in command.params for o in p.opts + p.secondary_opts} | {"--help"}

    visit(root, "")
    return found


def seqae_commands(text: str) -> list[str]:
    """Every ``seqae ...`` command line in fenced code blocks and inline code, continuation lines joined."""
    blocks = re.findall(r"^```[a-z]*\n(.*?)^```", text, flags=re.S | re.M)
    lines = "\n".join(blocks).replace("\\\n", " ").splitlines() + re.findall(r"`([^`\n]+)`", prose_code(text))
    return [line.split("#")[0].strip() for line in lines if re.match(r"\s*(\.venv/bin/)?seqae ", line)]


def prose_code(text: str) -> str:
    return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)


def wrong_commands(text: str, known: dict[str, set[str]]) -> list[str]:
    """The ``seqae`` command lines in ``text`` that name a subcommand or an option the CLI lacks
    (``[--opt]`` and ``a|b`` placeholders are read as options and values)."""
    wrong = []
    for line in seqae_commands(text):
        words = [w.strip("[]") for w in shlex.split(line.replace("|", " "))][1:]
        words = [w for w in words if w and w not in ("--quiet", "-q")]
        if not words or words[0] in ("COMMAND", "--help", "--version"):
            continue
        command = next((c for c in sorted(known, key=len, reverse=True) if words[: len(c.split())] == c.split()), None)
        if command is None:
            wrong.append(f"{line!r}: no subcommand {words[0]!r}")
            continue
        options = {w.split("=")[0] for w in words if w.startswith("-")}
        if options - known[command]:
            wrong.append(f"{line!r}: seqae {command} has no {', '.join(sorted(options - known[command]))}")
    return wrong


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_seqae_command_written_names_real_options(path):
    wrong = wrong_commands(path.read_text(), cli_options())
    assert wrong == [], f"{path.relative_to(REPO)}: " + "; ".join(wrong)


def test_the_command_reader_catches_an_invented_option_and_subcommand():
    known = cli_options()
    assert "train" in known and "datasets ecg5000" in known and "--model-dir" in known["train"]
    text = "```bash\nseqae embed --model M \\\n  --no-such-option  # why\nseqae fly\n```\nand `seqae train --data D`\n"
    assert wrong_commands(text, known) == ["'seqae embed --model M    --no-such-option': seqae embed has no "
                                           "--no-such-option", "'seqae fly': no subcommand 'fly'"]
