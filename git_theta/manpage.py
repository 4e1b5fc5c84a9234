"""The manual page `git-theta(1)`, made from the click CLI so it cannot drift from `--help`.

Git turns `git theta --help` into `man git-theta` (and `git help theta` too), so without a
page both print "No manual entry". The page is generated, committed as `man/man1/git-theta.1`
and installed into `share/man/man1` (pyproject.toml data-files), where `man` finds it through
PATH (`<venv>/bin` -> `<venv>/share/man`). `python -m git_theta.manpage` rewrites it after a
command or option changes; a test fails while the committed page differs.
"""

from __future__ import annotations

import inspect
import re
import sys
from pathlib import Path

import click

from git_theta._version import __version__

__all__ = ["PAGE", "render", "main"]

#: Where the page lives in the source tree.
PAGE = Path("man") / "man1" / "git-theta.1"

_SEE_ALSO = r"\fBgit\fR(1), \fBgitattributes\fR(5), \fBgit\-lfs\fR(1)"
_DESCRIPTION = """\
git-theta is a Git extension for machine-learning checkpoints. A tracked checkpoint is
cleaned into a small metadata file that Git stores (every parameter's dtype, shape and
content hash) and its tensors into a content-addressed store in the repository's git
directory; only tensors that changed are stored again. Checkout rebuilds the real file.
Objects travel to remotes over the Git LFS batch API.

Start with `git theta install` (once), then `git theta track "*.safetensors"` in a
repository; `git add`, `commit`, `checkout`, `merge` and `diff` then work on checkpoints.
`git theta help COMMAND` prints one command's help."""


def _escape(text: str) -> str:
    """Text safe as roff: backslashes and hyphens escaped, no line read as a request."""
    text = text.replace("\\", r"\e").replace("-", r"\-")
    return "\n".join(r"\&" + line if line[:1] in (".", "'") else line for line in text.split("\n"))


def _paragraphs(text: str) -> list[str]:
    # click's `\b` marks a paragraph it must not rewrap; a man page rewraps nothing anyway.
    lines = [line for line in inspect.cleandoc(text).split("\n") if line.strip() != "\b"]
    return [p.strip() for p in re.split(r"\n\s*\n", "\n".join(lines)) if p.strip()]


def _command_section(ctx: click.Context, name: str, command: click.Command) -> list[str]:
    sub = click.Context(command, info_name=name, parent=ctx)
    usage = " ".join(command.collect_usage_pieces(sub))
    out = [".TP", rf"\fBgit theta {_escape(name)}\fR {_escape(usage)}"]
    for i, paragraph in enumerate(_paragraphs(command.help or "")):
        out += ([] if i == 0 else [".IP"]) + [_escape(paragraph)]
    options = [
        record
        for p in command.params
        if isinstance(p, click.Option) and not p.hidden
        for record in [p.get_help_record(sub)]
        if record is not None
    ]
    if options:
        out.append(".RS")
        for switches, help_text in options:
            out += [".TP", rf"\fB{_escape(switches)}\fR", _escape(help_text)]
        out.append(".RE")
    return out


def render(cli: click.Group | None = None) -> str:
    """The page for `cli` (default: git-theta's), as roff text."""
    if cli is None:
        from git_theta.cli import cli as git_theta_cli

        cli = git_theta_cli
    ctx = click.Context(cli, info_name="git-theta")
    lines = [
        rf'.TH GIT\-THETA 1 "" "git\-theta {_escape(__version__)}" "Git Manual"',
        ".SH NAME",
        rf"git\-theta \- {_escape(_paragraphs(cli.help or '')[0])}",
        ".SH SYNOPSIS",
        r"\fBgit theta\fR \fICOMMAND\fR [\fIARGS\fR]",
        ".br",
        r"\fBgit theta\fR [\fB\-\-version\fR | \fB\-h\fR | \fB\-\-help\fR]",
        ".SH DESCRIPTION",
    ]
    for i, paragraph in enumerate(_paragraphs(_DESCRIPTION)):
        lines += ([] if i == 0 else [".PP"]) + [_escape(paragraph)]
    lines.append(".SH COMMANDS")
    for name in sorted(cli.commands):
        command = cli.commands[name]
        if not command.hidden:
            lines += _command_section(ctx, name, command)
    lines += [".SH SEE ALSO", _SEE_ALSO, ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Write the page to PAGE under the current directory (or the path given)."""
    args = sys.argv[1:] if argv is None else argv
    target = Path(args[0]) if args else PAGE
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render(), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
