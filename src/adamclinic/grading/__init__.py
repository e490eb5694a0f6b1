"""The grader: nbgrader's workflow for the course, a class graded in parallel, each submission sandboxed.

``python -m adamclinic.grading {release,submit,grade,feedback}`` (``cli``) runs the workflow; ``batch``
grades a class on Dask; ``task`` autogrades one submission in a worker; ``execute`` is the nbgrader
preprocessor that hands a notebook, its hidden tests blanked, to ``runner`` inside ``sandbox``
(bubblewrap), and the hidden tests to ``judge``, a process of its own that never runs student code;
answers cross between them as plain data (``plain``, served in the kernel by ``handin``); ``course``
holds what they share; ``bench`` times a class.

Nothing here imports TensorFlow, Keras or a lesson: the grader's processes never train
(``tests/test_architecture.py`` checks it). See grading/README.md for what the grader promises.
"""
