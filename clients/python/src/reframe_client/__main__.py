"""`python -m reframe_client ...` is `reframe-client ...`."""

import sys

from reframe_client.cli import main

sys.exit(main())
