from __future__ import annotations

import sys

from agentstage.cli import main

sys.exit(main())
