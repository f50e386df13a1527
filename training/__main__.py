"""Entry point of `python -m training`."""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is imported

from training.cli import main

sys.exit(main())
