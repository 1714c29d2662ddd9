"""Every registered latent family, detector, loss term and classifier strategy passes
the generic checks (hyperzsl.conformance). Parametrised over the registries at
collection; the run-time loops check them again, so parts registered by any imported
module (a plugin, tests/test_plugins_toy.py) are checked too."""
import pytest
import torch

from hyperzsl.conformance import check_detector, check_family, check_loss_term, check_strategy
from hyperzsl.detect.detectors import REGISTRY
from hyperzsl.latent import FAMILIES
from hyperzsl.registry import LOSS_TERMS, STRATEGIES

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


@pytest.mark.parametrize("name", LOSS_TERMS.names())
def test_loss_term_conforms(name):
    check_loss_term(name, families=tuple(FAMILIES.names()))


STRATEGY_CASES = [("feature_space", {"join_codes": True})]


@pytest.mark.parametrize("name, options", [(n, {}) for n in STRATEGIES.names()] + STRATEGY_CASES)
def test_strategy_conforms(name, options):
    check_strategy(name, options)


CHECKED = {"families": set(), "detectors": set(), "terms": set(), "strategies": set()}


def test_every_registered_family_conforms():
    for name in FAMILIES.names():
        check_family(name)
        CHECKED["families"].add(name)


def test_every_registered_detector_conforms():
    for name in REGISTRY.names():
        check_detector(name)
        CHECKED["detectors"].add(name)


def test_every_registered_loss_term_conforms():
    for name in LOSS_TERMS.names():
        check_loss_term(name)
        CHECKED["terms"].add(name)


def test_every_registered_strategy_conforms():
    for name in STRATEGIES.names():
        check_strategy(name)
        CHECKED["strategies"].add(name)


def test_plugins_registered_elsewhere_were_checked():
    """Pytest imports every test module before running any test, so the toy plugins of
    tests/test_plugins_toy.py are registered by now (when that module is collected)."""
    import sys
    if "test_plugins_toy" not in sys.modules:
        pytest.skip("tests/test_plugins_toy.py not collected in this run")
    assert "toy_unit_gaussian" in CHECKED["families"]
    assert "toy_centroid" in CHECKED["detectors"]
    assert "toy_code_norm" in CHECKED["terms"]
    assert "toy_nearest_mean" in CHECKED["strategies"]
