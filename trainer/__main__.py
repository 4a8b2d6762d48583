"""`python -m trainer --corpus DIR --out CKPT_DIR ...` (same flags as `flanmix train`)."""
import sys

from trainer.cli import main

sys.exit(main())
