from __future__ import annotations

import sys

from mlpipe_dev.demo.runner import main

sys.exit(main())
