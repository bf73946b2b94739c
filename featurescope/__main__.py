"""``python -m featurescope``: the same as the ``featurescope`` command."""
import sys

from featurescope.cli.main import main

sys.exit(main())
