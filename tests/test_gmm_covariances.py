"""The covariance modules share one interface (jaxem._src.gmm.covariances)."""

import inspect

import pytest

from jaxem._src.gmm import covariances as cov_lib
from jaxem._src.gmm.covariances import eigen

MODULE_NAMES = tuple(t for t in cov_lib.ALL_COVARIANCE_TYPES if t not in cov_lib.ALIASES)


@pytest.mark.parametrize("covariance_type", MODULE_NAMES)
def test_every_module_implements_the_interface(covariance_type):
    module = cov_lib.get(covariance_type)
    reference = cov_lib.get("full")
    for name in cov_lib.INTERFACE:
        assert hasattr(module, name), f"{covariance_type} lacks {name}"
        if covariance_type not in cov_lib.COVARIANCE_TYPES and name in eigen.UNSUPPORTED:
            with pytest.raises(NotImplementedError, match=repr(covariance_type)):
                getattr(module, name)()
            continue
        if callable(getattr(reference, name)):
            expected = list(inspect.signature(getattr(reference, name)).parameters)
            assert list(inspect.signature(getattr(module, name)).parameters) == expected, name
    assert module.SHARED == (covariance_type == "tied")
