"""One version for package, chart and image: pyproject.toml's, which the installed package reports
as flowrun.__version__; the chart's version and appVersion, the image's version label and the
image tags the docs show all follow it."""

from __future__ import annotations

import re
import tomllib

import yaml

import flowrun
from tests.dockerfile import DOCKERFILE, REPO

VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]


def test_the_package_reports_the_version_of_pyproject() -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+", VERSION), VERSION
    assert flowrun.__version__ == VERSION, "reinstall the package (scripts/ensure-venv) after a version bump"


def test_the_chart_carries_the_package_version() -> None:
    chart = yaml.safe_load((REPO / "charts" / "flowrun-operator" / "Chart.yaml").read_text())
    assert (chart["version"], chart["appVersion"]) == (VERSION, VERSION)


def test_the_image_label_carries_the_package_version() -> None:
    labels = re.findall(r'org\.opencontainers\.image\.version="([^"]*)"', DOCKERFILE.read_text())
    assert labels == [VERSION]


def test_the_image_tags_in_the_docs_are_the_package_version() -> None:
    for doc in ("README.md", "docs/install.md", "Dockerfile"):
        tags = re.findall(r"flowrun-operator:(\d+\.\d+\.\d+)", (REPO / doc).read_text())
        assert tags and set(tags) == {VERSION}, f"{doc}: {tags}"
