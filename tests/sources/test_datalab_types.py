"""Tractor types for the Data Lab TAP source: text or bytes (as FITS and HDF5 hold them)."""

import numpy as np
import pytest

from gpm_astro.exceptions import ParameterError
from gpm_astro_plugins.datalab.tap import DataLabTAP


def _adql(types):
    payload = DataLabTAP(types=types, brickid_range=(1000, 1999)).query(
        get_query_payload=True)
    return payload[0]["data"]["QUERY"]


@pytest.mark.parametrize("types", [b"EXP", np.bytes_(b"EXP "), [b"EXP"], ("EXP ",)])
def test_bytes_and_padded_names_are_the_type_they_spell(types):
    assert _adql(types) == _adql("EXP")


@pytest.mark.parametrize("types, shown", [([69], "got 69"), ("exp", "got 'exp'"),
                                          (b"XYZ", "got 'XYZ'")])
def test_other_values_are_refused_by_name(types, shown):
    with pytest.raises(ParameterError, match=shown):
        _adql(types)
