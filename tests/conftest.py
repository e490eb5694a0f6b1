"""Settings for the whole test run."""

import os

# Panels pause ~20 ms per epoch so a student can watch a curve form; headless runs have no one to
# watch. The browser tests put the pause back for their JupyterLab server (tests/test_browser.py).
os.environ["ADAMCLINIC_NO_PACING"] = "1"
