"""Where the course's folders are: one place that knows the package sits in ``src/adamclinic`` of the repository.

Standard library only, so the grader's processes (which never import TensorFlow) use it too.
"""

from __future__ import annotations

from pathlib import Path

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
"""The course repository: ``lessons/``, ``solutions/``, ``exercises/``, ``datasets/``, ``grading/``."""
