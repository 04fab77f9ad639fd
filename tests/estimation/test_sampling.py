"""uniform_in_z_sample and split_table."""

import numpy as np
import pytest
from astropy.table import Table

from gpm_astro.exceptions import ParameterError, SchemaError
from gpm_astro.sampling import equal_bin_allocation, split_table, uniform_in_z_sample


@pytest.fixture
def peaked():
    rng = np.random.default_rng(0)
    z = np.concatenate([rng.normal(9.0, 0.08, 9000), rng.uniform(8.2, 9.4, 1000)])
    z[:5] = -9999.0
    return Table({"oh_p50": z, "row": np.arange(z.size)})


def test_allocation_caps_and_redistributes():
    rng = np.random.default_rng(0)
    alloc = equal_bin_allocation([3, 100, 100, 7], 100, rng)
    assert alloc.tolist()[0] == 3 and alloc.tolist()[3] == 7
    assert alloc.sum() == 100 and abs(alloc[1] - alloc[2]) <= 1
    with pytest.raises(ParameterError):
        equal_bin_allocation([1, 2], 4, rng)


def test_uniform_sample_is_flatter_than_input(peaked):
    sample = uniform_in_z_sample(peaked, 2000, n_bins=12, seed=4)
    assert len(sample) == 2000
    assert len(np.unique(sample["row"])) == 2000  # no duplicates
    assert np.all(sample["oh_p50"] > 0)  # sentinels never drawn
    assert np.all(np.diff(sample["row"]) > 0)  # input order kept
    counts, _ = np.histogram(sample["oh_p50"], bins=12,
                             range=(peaked["oh_p50"][5:].min(), peaked["oh_p50"].max()))
    info = sample.meta["gpm_astro"]["steps"][-1]["params"]
    drawn = np.array(info["drawn_per_bin"])
    available = np.array(info["available_per_bin"])
    assert np.all(drawn <= available)
    # bins that held enough rows all contributed the same count (+-1)
    full = drawn < available
    assert np.ptp(drawn[full]) <= 1
    assert counts.tolist() == drawn.tolist()
    # the input is strongly peaked; the sample is much flatter
    in_counts, _ = np.histogram(peaked["oh_p50"][5:], bins=12)
    assert counts.std() / counts.mean() < 0.5 * in_counts.std() / in_counts.mean()


def test_uniform_sample_reproducible_and_seeded(peaked):
    a = uniform_in_z_sample(peaked, 500, seed=1)
    b = uniform_in_z_sample(peaked, 500, seed=1)
    c = uniform_in_z_sample(peaked, 500, seed=2)
    assert a["row"].tolist() == b["row"].tolist()
    assert a["row"].tolist() != c["row"].tolist()


def test_uniform_sample_errors(peaked):
    with pytest.raises(ParameterError, match="only 9995"):
        uniform_in_z_sample(peaked, 10_000)
    with pytest.raises(SchemaError, match="nope"):
        uniform_in_z_sample(peaked, 10, column="nope")
    with pytest.raises(ParameterError, match="n_bins"):
        uniform_in_z_sample(peaked, 10, n_bins=0)
    before = peaked.copy()
    uniform_in_z_sample(peaked, 10)
    assert np.array_equal(before["oh_p50"], peaked["oh_p50"]) and peaked.meta == before.meta


def test_split_fractions_disjoint_and_reproducible():
    table = Table({"row": np.arange(25_000)})
    train, val, test = split_table(table)
    assert (len(train), len(val), len(test)) == (12_500, 7_500, 5_000)
    rows = np.concatenate([train["row"], val["row"], test["row"]])
    assert np.array_equal(np.sort(rows), np.arange(25_000))
    again = split_table(table, seed=123)
    assert again[2]["row"].tolist() == test["row"].tolist()
    other = split_table(table, seed=7)
    assert other[2]["row"].tolist() != test["row"].tolist()
    assert test.meta["gpm_astro"]["steps"][-1]["params"]["part"] == "test"


def test_split_odd_sizes_and_bad_fractions():
    parts = split_table(Table({"row": np.arange(7)}), (1, 1, 1), seed=0)
    assert sum(len(p) for p in parts) == 7
    for bad in ((5, 3), (5, -3, 2), "abc", (0, 1, 1)):
        with pytest.raises(ParameterError, match="fractions"):
            split_table(Table({"row": np.arange(7)}), bad)
