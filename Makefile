# Adam Clinic: two commands do everything.
#   make lab    create .venv if needed and open JupyterLab on the course
#   make test   check (or install) the system packages the tests drive, create .venv if needed, run every test
#   make check  the fast tests only (no training, no server): a contributor's inner loop, under 2 minutes
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
READY  := $(VENV)/.ready
A      ?=
WORKERS ?= 2
# TensorFlow's C++ start-up lines go to stderr, and nbgrader zeroes a test cell with any stderr.
export TF_CPP_MIN_LOG_LEVEL := 3
# nbgrader runs `alembic` by name when it opens a gradebook: the environment's bin must be on PATH.
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: lab test check system-test submit grade feedback bench release figures

# Chromium, bubblewrap and PostgreSQL, checked in seconds before the slow steps; installed when root with
# apt-get (CI), otherwise the exact command to run (tools/system_packages.py).
system-test:
	@$(PYTHON) tools/system_packages.py --install --for test

$(READY): requirements.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Adam Clinic needs Python 3.11 or newer; found " + sys.version.split()[0])'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || { \
	  echo "Could not create $(VENV). On Debian or Ubuntu install the venv module first: sudo apt-get install python3-venv"; \
	  rm -rf $(VENV); exit 1; }
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $@

lab: $(READY)
	$(BIN)/python -m adamclinic.lab

# The class hub's software (hub/requirements.txt, configurable-http-proxy from npm), for make hub and its test.
HUB_READY := $(VENV)/.hub-ready
$(HUB_READY): hub/requirements.txt $(READY)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r hub/requirements.txt
	npm install --prefix $(VENV) --no-audit --no-fund --silent configurable-http-proxy@5.3.0
	@touch $@

test: system-test $(READY) $(HUB_READY)
	$(BIN)/python -m pytest -n auto --dist loadgroup --no-loadscope-reorder $(PYTEST_ARGS)

check: $(READY)
	ADAMCLINIC_FAST_ONLY=1 $(BIN)/python -m pytest -n auto -m "not slow" $(PYTEST_ARGS)

bench: $(READY)
	$(BIN)/python -m adamclinic.bench

# A student hands in an assignment: make submit A=ex01_learning_rate [STUDENT=name]
submit: $(READY)
	@test -n "$(A)" || { echo "Name the assignment: make submit A=ex01_learning_rate"; exit 2; }
	$(BIN)/python -m adamclinic.grading submit $(A) $(if $(STUDENT),--student $(STUDENT))

# A student fetches the feedback report after grading: make feedback A=ex01_learning_rate
feedback: $(READY)
	@test -n "$(A)" || { echo "Name the assignment: make feedback A=ex01_learning_rate"; exit 2; }
	$(BIN)/python -m adamclinic.grading feedback $(A) $(if $(STUDENT),--student $(STUDENT))

# An instructor (or a self-learner) grades everything handed in, each submission sandboxed, in parallel:
#   make grade A=ex01_learning_rate [WORKERS=2] [SCHEDULER=tcp://host:8786]   (grading/README.md)
#   sudo make grade A=ex01_learning_rate HUB=1 [SCHEDULER=...]   the class hub's submissions, as its instructor (hub/README.md)
grade: $(READY)
	@test -n "$(A)" || { echo "Name the assignment: make grade A=ex01_learning_rate"; exit 2; }
ifneq ($(HUB),)
	PYTHONPATH=hub $(BIN)/python -m classhub grade $(A) --workers $(WORKERS) $(if $(SCHEDULER),--scheduler $(SCHEDULER))
else
	$(BIN)/python -m adamclinic.grading grade $(A) --workers $(WORKERS) $(if $(SCHEDULER),--scheduler $(SCHEDULER))
endif

# After editing solutions/: regenerate the student version in exercises/
release: $(READY)
	@test -n "$(A)" || { echo "Name the assignment: make release A=ex01_learning_rate"; exit 2; }
	$(BIN)/python -m adamclinic.grading release $(A)

# After changing a lesson's runs or the drawing code: retrain and redraw the figures that open the lessons
#   make figures [NAME=01_learning_rate]   (adamclinic/figures.py; tests/test_figures.py checks they are current)
figures: $(READY)
	$(BIN)/python -m adamclinic.figures $(NAME)

# A class on this machine's JupyterHub (hub/README.md): root only, as it creates an account per member.
#   sudo make hub [ROSTER=hub/roster.toml] [PORT=8000] [DB=postgres]   sudo make hub-clean   (stops it, removes .hub/ and the accounts)
.PHONY: hub hub-clean
hub:
	@test "$$(id -u)" = 0 || { echo "make hub needs root: it creates a Unix account for each member of the class and starts their servers as them. Run: sudo make hub"; exit 2; }
	@$(MAKE) --no-print-directory $(HUB_READY)
	PYTHONPATH=hub $(BIN)/python -m classhub start $(if $(ROSTER),--roster $(ROSTER)) $(if $(PORT),--port $(PORT)) $(if $(DB),--db $(DB))

hub-clean:
	@test "$$(id -u)" = 0 || { echo "make hub-clean needs root: it removes the accounts make hub created. Run: sudo make hub-clean"; exit 2; }
	PYTHONPATH=hub $(BIN)/python -m classhub clean
