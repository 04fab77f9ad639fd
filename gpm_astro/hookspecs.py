"""Hook specifications: the only ways a plugin adds components to gpm_astro.

A plugin is a module (or object) with functions marked ``@gpm_astro.hookimpl`` and named like
the specifications below, advertised under the ``gpm_astro`` entry-point group::

    [project.entry-points.gpm_astro]
    my_plugin = "my_package.plugin"

Each hook receives a ``register`` callable; call it once per class::

    @hookimpl
    def gpm_astro_register_estimators(register):
        register(MyEstimator, name="my_estimator")

A class may also be given by its import path, ``register("my_package.estimator:MyEstimator",
name="my_estimator")``: its module is then imported only when the component is first used,
which keeps ``import gpm_astro`` and every look-up of another component light. Only functions
marked ``@hookimpl`` are called; an unmarked function of the same name is ignored.
"""

import pluggy

hookspec = pluggy.HookspecMarker("gpm_astro")


@hookspec
def gpm_astro_register_estimators(register):
    """Register estimator classes (subclasses of `gpm_astro.base.Estimator`).

    Parameters
    ----------
    register : callable
        ``register(cls, name=None)``; ``name`` defaults to ``cls.name``; ``cls`` may be an import
        path ``"module:ClassName"`` (then ``name`` is required). An estimator turns a table of
        galaxies into predictions of a scalar such as Z = 12 + log(O/H).
    """


@hookspec
def gpm_astro_register_preprocessing_steps(register):
    """Register preprocessing-step classes (subclasses of `gpm_astro.base.PreprocessingStep`).

    Parameters
    ----------
    register : callable
        ``register(cls, name=None)``; ``name`` defaults to ``cls.name``. A step is called on a
        batch of cutouts and returns cleaned images, per-row columns and a per-row flag.
    """


@hookspec
def gpm_astro_register_data_sources(register):
    """Register data-source classes (subclasses of `gpm_astro.base.DataSource`).

    Parameters
    ----------
    register : callable
        ``register(cls, name=None)``; ``name`` defaults to ``cls.name``. A data source yields
        tables: label catalogues, image catalogues, or cutouts.
    """


@hookspec
def gpm_astro_register_preprocessing_configs(register):
    """Register named preprocessing configurations (ordered lists of steps).

    Parameters
    ----------
    register : callable
        ``register(name, steps)``; ``steps`` is a list whose items are a registered step name
        or a ``(step name, parameters)`` pair. ``preprocess_cutouts(config=name)`` runs them in
        order; the step names are looked up only then, so a configuration may use steps of
        other plugins.
    """


@hookspec
def gpm_astro_register_commands(register):
    """Register ``gpm-astro`` subcommands (subclasses of `gpm_astro.base.Command`).

    Parameters
    ----------
    register : callable
        ``register(cls, name=None)``; ``name`` (the subcommand) defaults to ``cls.name``;
        ``cls`` may be an import path ``"module:ClassName"``. The command line adds one
        subcommand per registered class: ``add_arguments(parser)`` declares its options and
        ``run(args)`` does the work and returns the exit code. Import heavy modules inside
        ``run``, so that ``gpm-astro --help`` stays fast.
    """
