"""The Kubernetes path on paper (docs/deploy-kubernetes.md): the Helm values use only keys of the chart version
they name, and the course image installs from environment.yml's pins. Reads files only: no cluster, no network.

The chart's keys come from its values.schema.yaml, kept as a key tree in hub/k8s/chart-<version>-keys.json
(tests have no network to fetch the chart); the file's ``provenance`` names the schema it was read from and
the keys the chart's changelog adds on top of it.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "hub" / "k8s"
VALUES = K8S / "values.yaml"
DOCKERFILE = K8S / "Dockerfile"
# Installed in the image on top of environment.yml, each for a reason the Dockerfile states.
IMAGE_ONLY_PINS = {"jupyterhub"}  # the single-user side, at the hub pod's JupyterHub version


def chart_version() -> str:
    match = re.search(r"--version (\S+)", VALUES.read_text())
    assert match, "hub/k8s/values.yaml must name its chart version: helm upgrade ... --version X.Y.Z"
    return match.group(1)


def unknown_keys(values, spec, path="") -> list[str]:
    """Every key path in ``values`` that ``spec`` (the chart's key tree) does not define."""
    if spec == "*":
        return []
    if spec is None:
        return [f"{path} (a scalar or list in the chart, a mapping here)"] if isinstance(values, dict) else []
    if not isinstance(values, dict):
        return []
    wrong = []
    for key, value in values.items():
        below = spec.get(key, spec.get("<any>", KeyError))
        if below is KeyError:
            wrong.append(f"{path}.{key}".lstrip("."))
        else:
            wrong += unknown_keys(value, below, f"{path}.{key}")
    return wrong


def test_the_values_file_uses_only_keys_of_the_chart_version_it_names():
    """Every key in hub/k8s/values.yaml exists in the schema of the jupyterhub chart version it names."""
    values = yaml.safe_load(VALUES.read_text())
    keys_file = K8S / f"chart-{chart_version()}-keys.json"
    assert keys_file.exists(), f"no key tree for chart {chart_version()}: add {keys_file.name} from its schema"
    chart = json.loads(keys_file.read_text())
    assert chart["version"] == chart_version()
    assert not unknown_keys(values, chart["keys"]), unknown_keys(values, chart["keys"])


def test_the_key_check_catches_a_misspelt_key():
    """Not vacuous: a misspelt or misplaced key is reported with its path."""
    chart = json.loads((K8S / f"chart-{chart_version()}-keys.json").read_text())["keys"]
    values = {"singleuser": {"memory": {"limt": "3G"}, "storage": {"type": "dynamic"}}, "hubb": {}}
    assert sorted(unknown_keys(values, chart)) == ["hubb", "singleuser.memory.limt"]


def test_the_key_tree_says_where_it_comes_from():
    """The chart's key tree names its source schema (repository, path, commit) and each key added on top of it."""
    chart = json.loads((K8S / f"chart-{chart_version()}-keys.json").read_text())
    base = chart["provenance"]["base"]
    assert base["repository"] == "jupyterhub/zero-to-jupyterhub-k8s" and base["path"].endswith("values.schema.yaml")
    assert re.fullmatch(r"[0-9a-f]{40}", base["commit"])
    for dotted in chart["provenance"]["added"]:
        node = chart["keys"]
        for part in dotted.split("."):
            assert isinstance(node, dict) and part in node, f"{dotted} is listed as added but missing from keys"
            node = node[part]


def test_the_values_file_holds_the_course_deployment():
    """PostgreSQL for the hub, the shared ReadWriteMany volume, the course image, the culler; its Python compiles."""
    values = yaml.safe_load(VALUES.read_text())
    assert values["hub"]["db"]["type"] == "postgres"
    volumes = values["singleuser"]["storage"]["extraVolumes"]
    assert any(v.get("persistentVolumeClaim", {}).get("claimName") for v in volumes)
    assert values["singleuser"]["storage"]["extraVolumeMounts"][0]["mountPath"] == "/srv/nbgrader/exchange"
    assert values["cull"]["enabled"] is True
    for name, code in values["hub"]["extraConfig"].items():
        ast.parse(code, filename=name)
    for name, spec in values["singleuser"]["extraFiles"].items():
        if name.endswith("nbgrader"):
            ast.parse(spec["stringData"], filename=name)


def pins(text: str) -> dict[str, str]:
    return dict(re.findall(r"([A-Za-z0-9_.\-]+(?:\[[^\]]*\])?)==([0-9][^\s#\"']*)", text))


def test_the_course_image_installs_environment_yml_and_its_pins():
    """The Dockerfile creates the environment from environment.yml, and any pin of its own agrees with it."""
    dockerfile = DOCKERFILE.read_text()
    environment = pins((ROOT / "environment.yml").read_text())
    assert re.search(r"micromamba create [^\n]*--file environment\.yml", dockerfile)
    assert "COPY --chown=root:root environment.yml" in dockerfile
    own = pins(dockerfile)
    disagree = {
        name: (v, environment[name]) for name, v in own.items() if name in environment and environment[name] != v
    }
    assert not disagree, f"the Dockerfile pins differ from environment.yml: {disagree}"
    assert set(own) - set(environment) <= IMAGE_ONLY_PINS, set(own) - set(environment)
    # Extra packages stay inside environment.yml's pins.
    assert "--constraint requirements.txt" in dockerfile


def test_the_course_image_leaves_out_the_instructors_sources():
    """Students pull the image: it must not contain solutions/, tests/, the gradebook or the git history."""
    copied = re.findall(r"^COPY (?:--\S+ )*(.+) \S+$", DOCKERFILE.read_text(), flags=re.MULTILINE)
    sources = " ".join(copied).split()
    assert sources, "no COPY lines found"
    assert not [s for s in sources if s in {".", "solutions", "tests", ".git", "grading"}], sources
