"""The example app (examples/gunicorn-app) behind an import that takes
$IMPORT_DELAY seconds (default 5), as a real model's does: gunicorn's master
binds its port at once, its workers answer only once the import is done.
For tests/it/front_readiness.rs: `gunicorn --chdir tests/py slow_import:app`.
"""

import os
import sys
import time

time.sleep(float(os.environ.get("IMPORT_DELAY", "5")))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "examples", "gunicorn-app"))

from app import app  # noqa: E402,F401
