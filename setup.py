"""Package discovery (everything else is in pyproject.toml).

Subpackages are found, not listed by hand, so a new folder under featurescope/ is never
left out of a wheel. The one package find_packages cannot see is the top-level
resources/ folder, installed as featurescope.resources (see [tool.setuptools.package-dir])
so that a wheel install finds the sample photos and icons too; pyproject.toml cannot
combine a find directive with an extra package, hence these few lines here.
"""
from setuptools import find_packages, setup

setup(packages=find_packages(include=["featurescope", "featurescope.*"]) + ["featurescope.resources"])
