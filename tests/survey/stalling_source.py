"""A data source that stalls once on one row, so that a test can kill the worker reading it.

Dask worker processes load this file as a ``preload`` script; the test process registers it
with `register`. The first task that reads ``stall_row`` writes its process id to
``marker_dir/attempt-1`` and sleeps; the retried task writes ``attempt-2`` and reads normally.
"""

import os
import time
from pathlib import Path

from gpm_astro import hookimpl
from gpm_astro.plugins import register_plugin
from gpm_astro_plugins.legacysurvey.archive_source import LegacySurveyArchive


class StallingArchive(LegacySurveyArchive):
    """`legacysurvey_archive` that sleeps the first time it is asked for ``stall_row``."""

    name = "stalling_archive"

    def __init__(self, *, path=None, stall_row=None, marker_dir=None):
        super().__init__(path=path)
        self.stall_row = stall_row
        self.marker_dir = marker_dir

    def query(self, **criteria):
        rows = criteria.get("rows")
        if rows is not None and self.stall_row in [int(r) for r in rows]:
            first = Path(self.marker_dir) / "attempt-1"
            if not first.exists():
                first.write_text(str(os.getpid()))
                time.sleep(300)  # until the test kills this worker
            else:
                (Path(self.marker_dir) / "attempt-2").write_text(str(os.getpid()))
        return super().query(**criteria)


class StallingPlugin:
    @hookimpl
    def gpm_astro_register_data_sources(self, register):
        register(StallingArchive, name="stalling_archive")


def register():
    return register_plugin(StallingPlugin(), name="stalling_archive_plugin")


def dask_setup(worker):
    """Called by Dask in a worker process that preloads this file."""
    register()
