"""`python -m pipelines.cli ...` is the `flanmix` command."""
import sys

from pipelines.cli import main

sys.exit(main())
