import sys

from labelhub.cli import main

sys.exit(main())
