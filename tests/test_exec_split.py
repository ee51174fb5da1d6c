"""split_command: words and operators as /bin/sh tells them apart."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from openclaw.agents.tools.exec_split import Token, split_command


def op(text: str) -> Token:
    return Token(text, operator=True)


class SplitCommandTests(SynchronousTestCase):
    def test_bare_operators_split_and_group(self) -> None:
        """A run of bare operator characters is one operator token."""
        self.assertEqual(
            split_command("ls -l && git status|wc -l; true&"),
            [
                Token("ls"),
                Token("-l"),
                op("&&"),
                Token("git"),
                Token("status"),
                op("|"),
                Token("wc"),
                Token("-l"),
                op(";"),
                Token("true"),
                op("&"),
            ],
        )
        self.assertEqual(split_command("a >&2"), [Token("a"), op(">&"), Token("2")])

    def test_quoted_and_escaped_operators_are_words(self) -> None:
        """What the shell passes as an argument is a word, quotes removed."""
        self.assertEqual(
            split_command("""head \\; ';' "&&" '|'x a\\&b"""),
            [Token("head"), Token(";"), Token(";"), Token("&&"), Token("|x"), Token("a&b")],
        )

    def test_quote_removal_follows_posix(self) -> None:
        """Single quotes keep backslashes; double quotes escape only $ ` " \\ and
        a newline; an empty quoted word is a word."""
        self.assertEqual(
            split_command("""printf '%s\\n' "a\\"b\\c" '' x"""),
            [Token("printf"), Token("%s\\n"), Token('a"b\\c'), Token(""), Token("x")],
        )

    def test_an_open_quote_is_no_command(self) -> None:
        self.assertIsNone(split_command("echo 'oops"))
        self.assertIsNone(split_command('echo "oops'))

    def test_a_comment_is_not_split(self) -> None:
        """A bare ``#`` starting a word begins a comment for dash: the rest of
        the line is not run, so nothing after it can be judged (None). Inside
        a word, quoted or escaped it is text."""
        for command in ("env #/../usr/bin/ls", "ls;#x", "ls&&#x", "#", "a\t#b"):
            self.assertIsNone(split_command(command), command)
        self.assertEqual(
            split_command("""a#b '#' \\# "#" x#"""),
            [Token("a#b"), Token("#"), Token("#"), Token("#"), Token("x#")],
        )
