"""`python -m job.view` is `job view`."""

from __future__ import annotations

import sys

from job.view.cli import main

sys.exit(main())
