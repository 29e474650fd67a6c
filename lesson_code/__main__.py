import sys

from lesson_code.cli import main

sys.exit(main())
