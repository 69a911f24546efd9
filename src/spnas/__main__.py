import sys

from spnas.cli.main import main

sys.exit(main())
