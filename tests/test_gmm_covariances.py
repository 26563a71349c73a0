"""The covariance modules share one interface (jaxem._src.gmm.covariances)."""

import inspect

import pytest

from jaxem._src.gmm import covariances as cov_lib


@pytest.mark.parametrize("covariance_type", cov_lib.COVARIANCE_TYPES)
def test_every_module_implements_the_interface(covariance_type):
    module = cov_lib.get(covariance_type)
    reference = cov_lib.get("full")
    for name in cov_lib.INTERFACE:
        assert hasattr(module, name), f"{covariance_type} lacks {name}"
        if callable(getattr(reference, name)):
            expected = list(inspect.signature(getattr(reference, name)).parameters)
            assert list(inspect.signature(getattr(module, name)).parameters) == expected, name
    assert module.SHARED == (covariance_type == "tied")
