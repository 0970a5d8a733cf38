from __future__ import annotations

import sys

from airflow_mlpipe.demo.runner import main

sys.exit(main())
