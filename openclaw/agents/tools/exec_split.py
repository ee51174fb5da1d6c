"""Splitting an exec command into words and operators the way the shell does.

The allowlist judges each pipeline or chain segment on its own, so where one
segment ends must be decided as ``/bin/sh`` decides it: only an operator
character written bare (``;``, ``&``, ``|``, ``<``, ``>``, ``(``, ``)``) is an
operator. A quoted or escaped one (``';'``, ``"&&"``, ``\\;``) is part of a
word, an argument the program receives. ``shlex`` gives both as the same
token text, so a checker built on it split ``head -c300 \\; true FILE`` into a
flag-only ``head`` and a harmless ``true FILE`` while the shell ran
``head -c300 ';' true FILE`` and printed the file.

Quote removal follows POSIX: single quotes keep everything; in double quotes
a backslash escapes only ``$``, `````, ``"``, ``\\`` and a newline; outside
quotes a backslash escapes the next character. A run of bare operator
characters is one operator token (``&&``, ``;;``, ``>&``), as ``shlex``
grouped them. Expansions are not performed: each word records whether the
shell would expand it (:attr:`Token.dynamic`, :attr:`Token.literal`), and the
caller refuses what it cannot judge. A comment (a bare ``#`` starting a
word) is not split at all: the caller refuses the command.
"""

from __future__ import annotations

from typing import Final

from attrs import frozen

OPERATOR_CHARS: Final = frozenset(";&|<>()")
_BLANKS: Final = frozenset(" \t")
_DOUBLE_QUOTE_ESCAPES: Final = frozenset('$`"\\\n')
#: Unquoted, these make the shell change a word: parameter, command and
#: arithmetic expansion, globs and (bash) braces.
_BARE_SPECIAL: Final = frozenset("$`*?[]{}")


@frozen
class Token:
    """A word (quotes removed) or a run of bare operator characters."""

    text: str
    operator: bool = False
    #: A ``$`` or backquote outside single quotes, unescaped: parameter,
    #: command or arithmetic expansion (OpenClaw's "dynamic argument").
    dynamic: bool = False
    #: The shell passes the word exactly as :attr:`text`: nothing in it is
    #: expanded (no bare glob, brace, ``$``, backquote or ``~``).
    literal: bool = True


def split_command(command: str) -> list[Token] | None:
    """The command's tokens, or None when a quote is left open or a comment
    begins: a ``#`` written bare at the start of a word makes the shell drop
    the rest of the line, so the words after it are not what runs
    (``env #/../usr/bin/ls`` runs a bare ``env``). ``a#b``, ``'#'`` and
    ``\\#`` are ordinary text."""
    tokens: list[Token] = []
    word: list[str] = []
    started = False  # a word has begun, even an empty one (``''``)
    dynamic = False
    literal = True
    i, n = 0, len(command)

    def end_word() -> None:
        nonlocal started, dynamic, literal
        if started:
            tokens.append(Token("".join(word), dynamic=dynamic, literal=literal))
            word.clear()
            started = False
            dynamic = False
            literal = True

    while i < n:
        ch = command[i]
        if ch in _BLANKS:
            end_word()
            i += 1
        elif ch in OPERATOR_CHARS:
            end_word()
            j = i
            while j < n and command[j] in OPERATOR_CHARS:
                j += 1
            tokens.append(Token(command[i:j], operator=True))
            i = j
        elif ch == "\\":
            started = True
            if i + 1 < n:
                word.append(command[i + 1])
                i += 2
            else:
                word.append(ch)
                i += 1
        elif ch == "'":
            started = True
            end = command.find("'", i + 1)
            if end < 0:
                return None
            word.append(command[i + 1 : end])
            i = end + 1
        elif ch == '"':
            started = True
            i += 1
            while True:
                if i >= n:
                    return None
                ch = command[i]
                if ch == '"':
                    i += 1
                    break
                if ch == "\\" and i + 1 < n and command[i + 1] in _DOUBLE_QUOTE_ESCAPES:
                    word.append(command[i + 1])
                    i += 2
                else:
                    if ch in "$`":
                        dynamic, literal = True, False
                    word.append(ch)
                    i += 1
        elif ch == "#" and not started:
            return None  # a comment
        else:
            if ch in _BARE_SPECIAL or ch == "~":
                literal = False
                dynamic = dynamic or ch in "$`"
            started = True
            word.append(ch)
            i += 1
    end_word()
    return tokens
