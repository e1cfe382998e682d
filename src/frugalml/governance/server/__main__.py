"""``python -m frugalml.governance.server``: the governance server's command line (:mod:`.cli`)."""

import sys

from frugalml.governance.server.cli import main

sys.exit(main())
