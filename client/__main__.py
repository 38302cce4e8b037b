"""``python -m client`` runs the ``bitswarm`` command."""

import sys

from client.cli import main

sys.exit(main())
