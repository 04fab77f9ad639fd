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
