"""The stages that make the labelled and application tables (sky to sample)."""

import sys
from concurrent.futures.process import BrokenProcessPool

import numpy as np

from ..exceptions import ParameterError, SchemaError
from ..process_pool import dead_worker_error, forkserver_pool, resolve_n_jobs
from ..survey_constants import BANDS, CUTOUT_SHAPE, PIXEL_SCALE_ARCSEC
from ..tables import optional_column, record_step
from .cutout_store import (CutoutWriter, _read_table, _write_table, read_cutouts,
                           with_cutout_store)
from .sources import make_pipeline_source, source_parameters


def _source_type_column(images):
    """The image catalogue's morphological-type column: ``source_type`` (the archive's name),
    else Tractor's ``type``, found ignoring case; a `SchemaError` naming both when absent."""
    for wanted in ("source_type", "type"):
        found = optional_column(images, wanted, "the application stage")
        if found is not None:
            return found
    msg = (f"the image catalogue needs the Legacy Survey morphological type of each galaxy, "
           f"column 'source_type' (or Tractor's 'TYPE'), to choose the application galaxies; "
           f"its columns: {images.colnames}")
    raise SchemaError(msg)


class DataStages:
    """Stages ``sky`` to ``sample`` of `gpm_astro.pipeline.Pipeline` (a mixin)."""

    def _stage_sky(self, chunk_size=100):
        """Ask the configured data source for its tables, then for the cutouts chunk by chunk
        (bounded memory; ``source.params.n_jobs`` worker processes), into the cutout store."""
        from tqdm.auto import tqdm

        config = self.config["source"]
        n_jobs = resolve_n_jobs(config["params"].get("n_jobs", 1))
        source = make_pipeline_source(config)
        self.log(f"  reading the tables of data source {config['name']!r} ...")
        tables = source.pipeline_tables()
        labels, catalogue, truth = tables.labels, tables.images, tables.truth
        if "cutout" in catalogue.colnames:
            catalogue = catalogue.copy(copy_data=False)
            catalogue.remove_column("cutout")
        catalogue["image_row"] = np.arange(len(catalogue))
        if truth is not None and len(truth) != len(catalogue):
            msg = (f"data source {config['name']!r} returned a truth table of {len(truth)} rows "
                   f"for {len(catalogue)} image rows; they must match row by row")
            raise SchemaError(msg)

        def chunk_of(start):
            cut = slice(start, start + chunk_size)
            return catalogue[cut], (truth[cut] if truth is not None else None)

        def checked(cutouts, n_rows):
            cutouts = np.asarray(cutouts, dtype=np.float32)
            if cutouts.shape != (n_rows,) + CUTOUT_SHAPE:
                msg = (f"data source {config['name']!r} returned cutouts of shape "
                       f"{cutouts.shape} for {n_rows} rows; expected (n, 3, 152, 152) of g, "
                       f"r, z nanomaggies")
                raise SchemaError(msg)
            return cutouts

        starts = list(range(0, len(catalogue), chunk_size))
        bar = tqdm(total=len(catalogue), desc=f"cutouts of {config['name']}", unit="cutout",
                   disable=not self.progress, file=sys.stderr)
        with CutoutWriter(self.path("sky/cutouts.h5"), len(catalogue), CUTOUT_SHAPE) as out:
            if n_jobs == 1:
                for start in starts:
                    rows, truth_rows = chunk_of(start)
                    out.write(start, checked(source.pipeline_cutouts(rows, truth_rows),
                                             len(rows)))
                    bar.update(len(rows))
            else:
                with forkserver_pool(n_jobs) as pool:
                    pending = []
                    for start in starts + [None] * (2 * n_jobs):
                        if start is not None:  # keep at most 2 chunks per worker in flight
                            rows, truth_rows = chunk_of(start)
                            pending.append((start, len(rows), pool.submit(
                                source.pipeline_cutouts, rows, truth_rows)))
                        if pending and (start is None or len(pending) > 2 * n_jobs):
                            done_start, n_rows, future = pending.pop(0)
                            try:
                                cutouts = future.result()
                            except BrokenProcessPool as exc:
                                raise dead_worker_error(
                                    f"drawing the sky's cutouts (n_jobs={n_jobs})", exc) from exc
                            out.write(done_start, checked(cutouts, n_rows))
                            bar.update(n_rows)
        bar.close()
        self._write_sky(labels, catalogue, truth, catalogue.meta)

    def _write_sky(self, labels, catalogue, truth, meta):
        config = self.config["source"]
        catalogue.meta.setdefault("bands", meta.get("bands", BANDS))
        catalogue.meta.setdefault("pixel_scale", meta.get("pixel_scale", PIXEL_SCALE_ARCSEC))
        record_step(catalogue, "pipeline.sky", source=config["name"],
                    params=source_parameters(config))
        self.log(f"  {len(labels):,} label rows, {len(catalogue):,} image-catalogue rows")
        _write_table(labels, self.path("sky/labels.fits"))
        if truth is not None:
            _write_table(truth, self.path("sky/truth.fits"))
        elif self.path("sky/truth.fits").exists():
            self.path("sky/truth.fits").unlink()
        _write_table(with_cutout_store(catalogue, "cutouts.h5", "image_row"),
                     self.path("sky/images.fits"))

    def _stage_select(self):
        from ..catalog import select_starforming

        labels = _read_table(self.path("sky/labels.fits"))
        selected = select_starforming(labels, **self.config["select"])
        self.log(f"  {len(selected):,} of {len(labels):,} labels are star-forming and pass "
                 f"every cut")
        _write_table(selected, self.path("select/labels_starforming.fits"))

    def _stage_crossmatch(self):
        import astropy.units as u

        from ..catalog import crossmatch

        labels = _read_table(self.path("select/labels_starforming.fits"))
        images = _read_table(self.path("sky/images.fits"))
        cfg = self.config["crossmatch"]
        matched = crossmatch(labels, images, radius=cfg["radius_arcsec"] * u.arcsec,
                             one_to_one=cfg["one_to_one"])
        n_matched = int(np.sum(np.asarray(matched["matched"])))
        self.log(f"  {n_matched:,} of {len(labels):,} labels have an image within "
                 f"{cfg['radius_arcsec']} arcsec")
        _write_table(with_cutout_store(matched, "../sky/cutouts.h5", "image_row"),
                     self.path("crossmatch/matched.fits"))

    def _application_rows(self, images, matched):
        """Rows of the image catalogue that get a catalogue entry (and why the others not)."""
        app = self.config["application"]
        source_type = np.char.upper(np.char.strip(
            np.asarray(images[_source_type_column(images)]).astype(str)))
        chosen = source_type == str(app["source_type"]).strip().upper()
        if app["unlabelled_only"]:
            used = np.asarray(matched["image_row"])[np.asarray(matched["matched"], bool)]
            labelled = np.zeros(len(images), bool)
            labelled[np.asarray(used, dtype=int)] = True
            chosen &= ~labelled
        rows = np.flatnonzero(chosen)
        if app["max_galaxies"] is not None:
            rows = rows[:app["max_galaxies"]]
        return rows

    def _stage_preprocess(self):
        matched = _read_table(self.path("crossmatch/matched.fits"))
        images = _read_table(self.path("sky/images.fits"))
        is_matched = np.asarray(matched["matched"], dtype=bool)
        labelled = matched[is_matched]
        labelled["image_row"] = np.asarray(labelled["image_row"], dtype=np.int64)
        app_rows = self._application_rows(images, matched)
        application = images[app_rows]
        self.log(f"  preprocessing {len(labelled):,} labelled and {len(application):,} "
                 f"application ({self.config['application']['source_type']}) cutouts")
        for name, table in (("labelled", labelled), ("application", application)):
            self._preprocess_table(table, name)

    def _preprocess_table(self, table, name, chunk_size=512):
        """Preprocess in chunks; cleaned cutouts go to an HDF5 store, the rest to a table."""
        from astropy.table import vstack
        from tqdm.auto import tqdm

        from .. import preprocess_cutouts

        source = self.cutout_store("sky/cutouts.h5")
        options = dict(self.config["preprocess"])
        options.setdefault("progress", False)  # the bar below counts every chunk
        pieces = []
        bar = tqdm(total=len(table), desc=f"preprocess {name}", unit="cutout",
                   disable=not self.progress, file=sys.stderr)
        with CutoutWriter(self.path(f"preprocess/{name}_cutouts.h5"), len(table),
                          CUTOUT_SHAPE, compress=True) as out:
            for start in range(0, len(table), chunk_size):
                chunk = table[start:start + chunk_size]
                chunk["cutout"] = read_cutouts(source, chunk["image_row"])
                chunk.meta["bands"] = BANDS
                chunk.meta["pixel_scale"] = PIXEL_SCALE_ARCSEC
                done = preprocess_cutouts(chunk, **options)
                out.write(start, done["cutout"])
                done.remove_column("cutout")
                pieces.append(done)
                bar.update(len(chunk))
        bar.close()
        if pieces:
            result = vstack(pieces, metadata_conflicts="silent")
            result.meta = dict(pieces[0].meta)
        else:
            result = self._empty_preprocessed(table)
        result["cutout_row"] = np.arange(len(result))
        flags = np.asarray(result["preprocess_flag"]).astype(str)
        counts = dict(zip(*np.unique(flags, return_counts=True)))
        self.log(f"  {name}: " + ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items())))
        _write_table(with_cutout_store(result, f"{name}_cutouts.h5", "cutout_row"),
                     self.path(f"preprocess/{name}.fits"))

    def _empty_preprocessed(self, table):
        result = table.copy()
        result["preprocess_ok"] = np.zeros(0, bool)
        result["preprocess_flag"] = np.zeros(0, "U20")
        return result

    def _check_label_columns(self, table):
        """Every label column the configuration names is in ``table``, before any training."""
        wanted = [("sample.column", self.config["sample"]["column"]),
                  ("evaluate.target", self.config["evaluate"]["target"])]
        for label, entry in self.config["estimators"].items():
            wanted.append((f"estimators.{label}.target", entry.get("target")))
            if entry.get("mass_model"):
                wanted.append((f"estimators.{label}.mass_model.target",
                               entry["mass_model"].get("target")))
        for key, column in wanted:
            if column is not None and column not in table.colnames:
                msg = (f"{key} = {column!r} is not a column of the labelled galaxies; "
                       f"columns: {table.colnames}")
                raise ParameterError(msg)

    def _stage_sample(self):
        from ..sampling import split_table, uniform_in_z_sample
        from ..tables import missing_mask

        cfg = self.config["sample"]
        labelled = _read_table(self.path("preprocess/labelled.fits"))
        ok = np.asarray(labelled["preprocess_ok"], dtype=bool)
        pool = labelled[ok]
        self._check_label_columns(pool)
        n_usable = int(np.sum(~missing_mask(pool[cfg["column"]])))
        n = min(cfg["n_galaxies"], int(cfg["max_fraction"] * n_usable))
        if n < cfg["n_galaxies"]:
            self.log(f"  {n_usable:,} galaxies passed preprocessing with a usable "
                     f"{cfg['column']}; drawing {n:,} (max_fraction {cfg['max_fraction']}, "
                     f"n_galaxies {cfg['n_galaxies']:,})")
        if n < 3:
            msg = (f"only {n} labelled galaxies survived selection, crossmatch and "
                   f"preprocessing; at least 3 are needed for a train/validation/test split")
            raise ParameterError(msg)
        sample = uniform_in_z_sample(pool, n, column=cfg["column"], n_bins=cfg["n_bins"],
                                     seed=cfg["seed"])
        parts = split_table(sample, cfg["fractions"], seed=cfg["seed"])
        pieces = []
        from astropy.table import vstack

        for part_name, part in zip(("train", "validation", "test"), parts):
            part = part.copy()
            part["split"] = np.full(len(part), part_name, dtype="U10")
            pieces.append(part)
        result = vstack(pieces, metadata_conflicts="silent")
        result.meta = sample.meta
        record_step(result, "pipeline.sample", requested=cfg["n_galaxies"], drawn=n,
                    n_usable=n_usable, max_fraction=cfg["max_fraction"],
                    n_train=len(parts[0]), n_validation=len(parts[1]), n_test=len(parts[2]),
                    fractions=cfg["fractions"], seed=cfg["seed"])
        self.log(f"  {len(parts[0]):,} train, {len(parts[1]):,} validation, "
                 f"{len(parts[2]):,} test galaxies")
        _write_table(with_cutout_store(result, "../preprocess/labelled_cutouts.h5",
                                       "cutout_row"), self.path("sample/sample.fits"))
