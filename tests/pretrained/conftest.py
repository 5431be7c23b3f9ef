"""Parity tests need the conversion extra (torch, torchvision, pytorchvideo). Without it they
skip locally, but fail in CI, whose install (`scripts/install.sh --convert`) has it."""

import os

import pytest


def require(module: str):
    try:
        return __import__(module)
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail(f"{module} is missing: CI installs the conversion extra "
                        "(scripts/install.sh --convert)")
        pytest.skip(f"{module} not installed (bash scripts/install.sh --convert)")


@pytest.fixture(scope="session")
def torch():
    return require("torch")


@pytest.fixture(scope="session")
def torchvision(torch):
    return require("torchvision")


@pytest.fixture(scope="session")
def pytorchvideo(torch):
    return require("pytorchvideo")


@pytest.fixture(scope="session")
def model_garden():
    """TF Model Garden's MoViNet modules (tf-models-official, in the conversion extra)."""
    require("official.projects.movinet.modeling.movinet")
    from official.projects.movinet.modeling import movinet, movinet_model

    return movinet, movinet_model
