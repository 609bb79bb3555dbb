import sys

from wsreid.cli import main

sys.exit(main())
