"""The course as a class on one machine's JupyterHub (``make hub``; hub/README.md says what it promises).

``roster`` reads the class list; ``setup`` lays out the state folder (``.hub/``), creates the accounts,
the course folder and nbgrader's exchange, and undoes all of it (``make hub-clean``); ``course_files``
copies the lessons into a student's home before each start of their server without overwriting their
edits; ``exchange`` is nbgrader's submit step with the submission readable by the instructors only;
``config`` writes each role's Jupyter configuration; ``spawner`` starts a member's processes as them;
``database`` runs the class's PostgreSQL server (``DB=postgres``); ``python -m classhub
{start,clean,grade}`` runs them.

It lives beside the hub's configuration, not in ``adamclinic``: importing the course package loads
TensorFlow, which neither the hub nor a student's Jupyter server (where nbgrader submits) should pay for.
Standard library only, besides nbgrader in ``exchange``, JupyterHub in ``spawner`` and psycopg in
``database`` (loaded only when PostgreSQL is chosen).
"""
