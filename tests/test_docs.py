"""The documentation: a short README that states CI's commands, and a docs site that builds
strictly, offline, with the results table taken from the evaluate stage's own output."""

from __future__ import annotations

import hashlib
import html
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
EVALUATION = ROOT / "data" / "08_reporting" / "evaluation.md"
RESULTS = ROOT / "docs" / "results.md"
INCLUDE = '--8<-- "data/08_reporting/evaluation.md"'


class _Tagged(yaml.SafeLoader):
    """mkdocs.yml with its `!relative` tag read as a plain string."""


_Tagged.add_multi_constructor("!", lambda loader, suffix, node: loader.construct_scalar(node))


def mkdocs_config() -> dict:
    return yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=_Tagged)


def test_readme_fits_in_two_screens():
    lines = README.read_text().splitlines()
    assert len(lines) < 200, f"README.md has {len(lines)} lines: move details to docs/"


def test_readme_states_the_commands_ci_runs():
    """The README's set-up and test commands are the ones .ci/run executes, word for word."""
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    setup = next(line for line in ci if line.startswith("python3.11 -m venv"))
    test = next(line for line in reversed(ci) if line.startswith(".venv/bin/pytest"))
    readme = README.read_text()
    assert f"\n{setup}\n" in readme
    commands = [line.split("#")[0].strip() for line in readme.splitlines()]
    assert test in commands
    assert '.venv/bin/pytest -m "not slow"' in commands  # the documented fast path


def test_readme_links_resolve():
    """Relative links from the README (to docs/ pages, mostly) point at files that exist,
    so they work on GitHub as well as in a clone."""
    targets = re.findall(r"\]\(([^)\s]+)\)", README.read_text())
    relative = [t for t in targets if not re.match(r"[a-z]+:", t) and not t.startswith("#")]
    assert relative, "the README links its docs pages"
    missing = [t for t in relative if not (ROOT / t.split("#")[0]).exists()]
    assert not missing, f"README links to missing files: {missing}"


def test_results_page_includes_evaluation_md_and_its_reading_is_current():
    """docs/results.md includes the evaluate stage's evaluation.md (never a copy), the
    include fails the build if the file is missing, and the hand-written reading below the
    tables names the SHA-256 of the evaluation.md it was checked against: when evaluation
    reruns with other figures this fails until someone reads them again and updates it."""
    page = RESULTS.read_text()
    assert f"\n{INCLUDE}\n" in page
    config = mkdocs_config()
    snippets = next(e["pymdownx.snippets"] for e in config["markdown_extensions"]
                    if isinstance(e, dict) and "pymdownx.snippets" in e)
    assert snippets["check_paths"] is True
    digest = hashlib.sha256(EVALUATION.read_bytes()).hexdigest()
    noted = re.search(r"evaluation\.md sha256: ([0-9a-f]{64})", page)
    assert noted, "docs/results.md notes the SHA-256 of the evaluation.md it was read against"
    assert noted.group(1) == digest, (
        "data/08_reporting/evaluation.md changed since docs/results.md's reading was written: "
        "check its figures against the new tables, then note the new SHA-256 "
        f"({digest}) in docs/results.md")


def test_docs_plugins_work_offline():
    """Only plugins that fetch nothing (Material's privacy or social plugins would)."""
    config = mkdocs_config()
    names = {p if isinstance(p, str) else next(iter(p)) for p in config["plugins"]}
    assert names <= {"search", "mkdocstrings"}, names


# Kedro's wiring (described on docs/pipelines.md) and modules re-exported by a documented package.
NOT_IN_API = ("gair.pipelines", "gair.datasets", "gair.hooks", "gair.settings",
              "gair.pipeline_registry", "gair.__main__", "gair.embed.api", "gair.embed.model",
              "gair.embed.__main__", "gair.training.__main__")


def test_every_library_module_is_on_an_api_page():
    """A new module of the library gets a place in the API reference (docs/api*.md)."""
    documented = set()
    for page in (ROOT / "docs").glob("api*.md"):
        documented |= set(re.findall(r"^::: ([\w.]+)$", page.read_text(), re.M))
    modules = set()
    for path in (ROOT / "src" / "gair").rglob("*.py"):
        parts = path.relative_to(ROOT / "src").with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        if not name.startswith(NOT_IN_API):
            modules.add(name)
    assert not modules - documented, f"not in docs/api*.md: {sorted(modules - documented)}"


def test_docs_build_strictly(tmp_path):
    """`mkdocs build --strict`: every warning (a broken link or anchor, a page outside the
    nav, a docstring mkdocstrings cannot render, a missing include) fails the build."""
    site = tmp_path / "site"
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
               str(ROOT / "mkdocs.yml"), "--site-dir", str(site)]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, check=False,
                            env=os.environ | {"NO_MKDOCS_2_WARNING": "1"})
    assert result.returncode == 0, f"{shlex.join(command)}\n{result.stdout}\n{result.stderr}"

    # The results page's tables are evaluation.md's, cell for cell, as the stage wrote them.
    def cells(lines):
        return [[c.strip() for c in line.strip().strip("|").split("|")] for line in lines]

    expected = cells(line.replace("**", "") for line in EVALUATION.read_text().splitlines()
                     if line.startswith("|") and not line.startswith("|---"))
    page = (site / "results" / "index.html").read_text()
    rendered = [[html.unescape(re.sub(r"<[^>]+>", "", c)).strip()
                 for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S)]
                for row in re.findall(r"<tr>(.*?)</tr>", page, re.S)]
    assert len(expected) > 20
    assert rendered == expected
    assert "--8&lt;--" not in page

    # The README's deviations table and introduction appear on the site (included, not copied).
    official = (site / "official" / "index.html").read_text()
    assert official.count("<tr>") >= 17, "the deviations table from README.md"
    assert "gair makes the GAIR geo-foundation model real" in (site / "index.html").read_text()
    assert (site / "api" / "index.html").read_text().count('id="gair.embed.load_model"') == 1
