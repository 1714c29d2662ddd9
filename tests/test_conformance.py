"""Every registered latent family and detector passes the generic checks
(hyperzsl.conformance). Parametrised over the registries at collection; the last two
tests loop over them at run time, so parts registered by any imported module (a plugin,
tests/test_plugins_toy.py) are checked too."""
import pytest
import torch

from hyperzsl.conformance import check_detector, check_family
from hyperzsl.detect.detectors import REGISTRY
from hyperzsl.latent import FAMILIES

FAMILY_CASES = [(name, options, dtype) for name in FAMILIES.names()
                for options in ({}, *FAMILIES.get(name).conformance_variants)
                for dtype in (torch.float32, torch.float64)]


@pytest.mark.parametrize("name, options, dtype", FAMILY_CASES,
                         ids=[f"{n}-{o}-{str(d)[6:]}" for n, o, d in FAMILY_CASES])
def test_family_conforms(name, options, dtype):
    check_family(name, options=options, dtype=dtype)


@pytest.mark.parametrize("name", REGISTRY.names())
def test_detector_conforms(name):
    check_detector(name)


CHECKED = {"families": set(), "detectors": set()}


def test_every_registered_family_conforms():
    for name in FAMILIES.names():
        check_family(name)
        CHECKED["families"].add(name)


def test_every_registered_detector_conforms():
    for name in REGISTRY.names():
        check_detector(name)
        CHECKED["detectors"].add(name)


def test_plugins_registered_elsewhere_were_checked():
    """Pytest imports every test module before running any test, so the toy plugins of
    tests/test_plugins_toy.py are registered by now (when that module is collected)."""
    import sys
    if "test_plugins_toy" not in sys.modules:
        pytest.skip("tests/test_plugins_toy.py not collected in this run")
    assert "toy_unit_gaussian" in CHECKED["families"]
    assert "toy_centroid" in CHECKED["detectors"]
