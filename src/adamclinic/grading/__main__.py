"""``python -m adamclinic.grading ...``: the course's nbgrader workflow (``adamclinic.grading.cli``)."""

import sys

from adamclinic.grading.cli import main

sys.exit(main())
