import sys

from temple_core.cli import main

sys.exit(main())
