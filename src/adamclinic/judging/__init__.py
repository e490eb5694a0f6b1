"""What runs inside the grading sandboxes, beside student code or in place of it.

* ``handin`` runs in the student's kernel: it hands the judge the answers a hidden test reads, as plain
  data, and calls the student's functions on the judge's behalf.
* ``plain`` is the format those answers cross in (numbers, arrays without pickle, the course's configs,
  Keras architectures and ``.keras`` files loaded with ``safe_mode``), read and written on both sides.
* ``judge`` runs the assignment's locked setup cells and hidden tests in a process that has never
  executed a student cell; its verdict is what the gradebook records.

These modules load TensorFlow; the grader that starts them (``adamclinic.grading``) never imports them,
it starts them by module name in a sandbox.
"""
