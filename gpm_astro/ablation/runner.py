"""`run_ablations`: the paper's ablation studies, one after the other, into one folder.

Layout of the output folder::

    sample/                 the pipeline run that made the labelled sample (unless run_dir)
    models/<label>/         each trained model's test predictions and result.json
    <study>.ecsv            one table per study, every number
    figures/*.png           Fig. 11 and 13 style figures, and the architectures figure
    settings.json           the settings of the run
    report.html             the studies as one HTML page

A study whose table exists is skipped on a rerun (delete the table, or pass ``force``, to
redo it); a model whose predictions exist for the same settings is not trained again, so an
interrupted run resumes where it stopped. Each table records the settings it was made with
(``meta['study_settings']``): a run into a folder holding a table made with other settings is
refused, naming the table (unless this run redoes it with ``force``), rather than keeping a
table that the folder's ``settings.json`` no longer describes. The figures and the report show
every study table of the folder.
"""

import json
import time
from pathlib import Path

from ..exceptions import ParameterError

__all__ = ["run_ablations", "study_settings"]

#: the settings sections each study depends on, besides sample, target and reference
_STUDY_SECTIONS = {"architectures": ("architectures",), "size": ("size",),
                   "resolution": ("resolution",), "bands": ("bands",), "mzr": ("mzr",)}


def study_settings(settings, name):
    """The settings that study ``name`` depends on, as canonical JSON text."""
    keys = ("sample", "target", "reference") + _STUDY_SECTIONS[name]
    return json.dumps({key: settings[key] for key in keys}, sort_keys=True, default=str)


def _settings_conflict(path, settings, name):
    """Why the existing table at ``path`` does not match ``settings`` (None if it does)."""
    from ..io import read_table

    recorded = read_table(path).meta.get("study_settings")
    if recorded is None:
        return "it records no settings"
    if recorded == study_settings(settings, name):
        return None
    old, new = json.loads(recorded), json.loads(study_settings(settings, name))
    differ = sorted(key for key in set(old) | set(new) if old.get(key) != new.get(key))
    return f"its {', '.join(differ)} settings differ"


def run_ablations(output_dir, settings=None, *, quick=False, studies=None, force=False,
                  progress=True):
    """Run the ablation studies of the paper (§4.2-4.6) on a labelled sample.

    Parameters
    ----------
    output_dir : str or path-like
        Output folder (created if needed).
    settings : dict, str or path-like, optional
        Settings overriding the defaults (see `gpm_astro.ablation.settings`), or a TOML,
        YAML or JSON file of them.
    quick : bool, optional
        Start from the CI-sized settings (a few hundred mock galaxies, quarter-width
        networks, 4 epochs) instead of the paper-sized ones.
    studies : sequence of str, optional
        Run only these studies (default: the settings' ``studies``).
    force : bool, optional
        Redo studies whose tables exist (trained models are still reused when their
        settings match).
    progress : bool, optional
        Messages and progress bars on standard error.

    Returns
    -------
    dict
        ``tables`` (study name -> Table), ``skipped`` (studies read back), ``figures``
        (file -> caption), ``report`` (path), ``seconds`` (per study run now).

    Raises
    ------
    ParameterError
        Bad settings or an unknown study.

    Examples
    --------
    >>> from gpm_astro.ablation import run_ablations
    >>> result = run_ablations("ablation_out", quick=True)  # doctest: +SKIP
    >>> result["tables"]["architectures"]["name", "sigma"]  # doctest: +SKIP
    """
    from ..io import atomic_write_bytes, read_table, write_table, writable_directory
    from ..report import render_report
    from .data import prepare_sample
    from .figures import write_figures
    from .models import ModelRunner, log
    from .report_section import ablation_section
    from .settings import STUDY_NAMES, load_settings
    from .studies import REFERENCE_LABEL, STUDIES

    settings = load_settings(settings, quick=quick)
    if studies is not None:
        unknown = [s for s in studies if s not in STUDY_NAMES]
        if unknown or not studies:
            msg = f"studies must be a non-empty list from {list(STUDY_NAMES)}, got {studies!r}"
            raise ParameterError(msg)
        settings["studies"] = list(studies)
    out = Path(output_dir)
    writable_directory(out, "ablation output folder")
    # refuse before anything is written, so that settings.json describes every table of the
    # folder: those this run would skip and those of studies it does not run
    for name in STUDY_NAMES:
        path = out / f"{name}.ecsv"
        if not path.is_file() or (force and name in settings["studies"]):
            continue
        why = _settings_conflict(path, settings, name)
        if why:
            redo = ("pass force=True (--force) to redo it" if name in settings["studies"] else
                    f"run the {name} study too (with force=True, --force) or delete it")
            msg = (f"{path} was made with other settings than this run's ({why}); {redo}, or "
                   f"choose another output folder")
            raise ParameterError(msg)
    atomic_write_bytes(out / "settings.json",
                       json.dumps(settings, indent=1, default=str).encode())
    runner = None  # made once a study needs the sample
    tables, skipped, seconds = {}, [], {}
    for name in settings["studies"]:
        path = out / f"{name}.ecsv"
        if path.is_file() and not force:
            log(f"{name}: {path.name} exists, skipped (force=True to redo)", progress)
            tables[name] = read_table(path)
            skipped.append(name)
            continue
        if runner is None:
            run_dir = prepare_sample(settings["sample"], out, progress=progress)
            runner = ModelRunner(run_dir, out, settings["target"], progress=progress,
                                 columns=(settings["size"]["column"],
                                          settings["mzr"]["mass_column"]))
        runner.log(f"{name} ...")
        tic = time.perf_counter()
        table = STUDIES[name](runner, settings)
        seconds[name] = time.perf_counter() - tic
        table.meta["study_settings"] = study_settings(settings, name)
        write_table(table, path, overwrite=True)
        tables[name] = table
        runner.log(f"{name} done in {seconds[name]:.1f} s -> {path.name}")
    # the figures show every study of the folder, as the report's tables do
    shown = {name: tables[name] if name in tables else read_table(out / f"{name}.ecsv")
             for name in STUDY_NAMES if name in tables or (out / f"{name}.ecsv").is_file()}
    reference = out / "models" / REFERENCE_LABEL / "predictions.ecsv"
    figures = write_figures(shown, out / "figures",
                            predictions=read_table(reference) if reference.is_file() else None)
    section = ablation_section(out)
    page = render_report(title="gpm_astro: the paper's ablation studies",
                         sections=[section], config=settings,
                         timings={f"study {k}": v for k, v in seconds.items()} or None)
    atomic_write_bytes(out / "report.html", page.encode("utf-8"))
    return {"tables": tables, "skipped": skipped, "figures": figures,
            "report": out / "report.html", "seconds": seconds}
