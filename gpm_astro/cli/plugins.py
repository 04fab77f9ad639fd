"""``gpm-astro plugins``: list the loaded estimators, preprocessing steps and data sources."""


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "plugins", help="list the loaded plugins",
        description="List every estimator, preprocessing step and data source that is loaded, "
                    "with the plugin and package that provides it.")
    parser.set_defaults(func=run)


def run(args):
    from ..plugins import list_plugins

    table = list_plugins()
    table.remove_column("class")
    table.pprint_all()
    return 0
