"""Every option of every ``gpm-astro`` command says what it does in --help."""

import argparse

from gpm_astro.cli import build_parser


def _options_without_help(parser, path):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _options_without_help(sub, path + [name])
        elif isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
            continue
        elif not action.help or action.help == argparse.SUPPRESS:
            yield f"{' '.join(path)} {'/'.join(action.option_strings) or action.dest}"


def test_every_option_and_argument_has_help():
    parser = build_parser()
    missing = list(_options_without_help(parser, ["gpm-astro"]))
    assert missing == [], f"options without help text: {missing}"


def test_the_walk_reaches_every_command():
    commands = set()

    def walk(parser, path):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    commands.add(" ".join(path + [name]))
                    walk(sub, path + [name])

    walk(build_parser(), [])
    assert {"demo", "run", "train", "predict", "fetch cutouts", "fetch catalog",
            "mock", "preprocess"} <= commands


def test_the_top_help_gives_the_exit_statuses_and_the_debug_switch(capsys):
    import pytest

    from gpm_astro.cli import DEBUG_ENV_VAR, main

    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "Exit status: 0 on success" in text and f"{DEBUG_ENV_VAR}=1" in text
    assert "130 when interrupted" in text
