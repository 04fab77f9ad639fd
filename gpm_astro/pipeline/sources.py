"""The data source of a run: any registered `~gpm_astro.base.PipelineSource`, by name."""

from ..exceptions import ParameterError

__all__ = ["pipeline_source_names", "source_parameters", "make_pipeline_source"]

#: keys of the ``source.params`` section that steer the run, not the source
_RUN_OPTIONS = ("n_jobs",)
#: file keys of the ``source`` section, passed to the source when set
_FILE_KEYS = ("labels", "images", "truth")


def pipeline_source_names():
    """Names of the registered data sources that can feed the pipeline, sorted."""
    from ..base import PipelineSource
    from ..plugins import list_components

    return sorted(c.name for c in list_components("data_source")
                  if issubclass(c.cls, PipelineSource))


def source_parameters(config):
    """The keyword arguments the ``source`` section gives its data source."""
    params = {k: v for k, v in (config.get("params") or {}).items() if k not in _RUN_OPTIONS}
    params.update({k: config[k] for k in _FILE_KEYS if config.get(k) is not None})
    return params


def make_pipeline_source(config):
    """Build the data source a configuration's ``source`` section names, its parameters checked.

    Parameters
    ----------
    config : dict
        The ``source`` section: ``name`` (a registered data source implementing
        `~gpm_astro.base.PipelineSource`), ``params``, and the optional ``labels``, ``images``
        and ``truth`` file paths.

    Returns
    -------
    gpm_astro.base.PipelineSource

    Raises
    ------
    ParameterError
        If the name is not such a source, or its parameters are refused.
    """
    from ..base import PipelineSource
    from ..exceptions import UnknownPluginError
    from ..plugins import get_source

    name = config.get("name")
    try:
        cls = get_source(name) if isinstance(name, str) else None
    except UnknownPluginError:
        cls = None
    if cls is None or not issubclass(cls, PipelineSource):
        msg = (f"source.name must name a registered data source that can feed the pipeline "
               f"(one of {pipeline_source_names()}), got {name!r}")
        raise ParameterError(msg)
    params = source_parameters(config)
    try:
        source = cls(**params)
    except TypeError as exc:
        msg = f"source.params of data source {name!r} are not accepted ({params!r}): {exc}"
        raise ParameterError(msg) from exc
    source.check_params()
    return source
