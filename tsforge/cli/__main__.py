import sys

from tsforge.cli import main

sys.exit(main())
