import sys

from tdmcmc.cli import main

sys.exit(main())
