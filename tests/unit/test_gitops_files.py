"""The GitOps files: the Argo CD health checks laid out as Argo CD's resource_customizations are
(each with its health_test.yaml and test objects), the argocd-cm snippet and its copy in
docs/install.md generated from them (scripts/generate), the Go modules of the tools the
e2e tests run, and the Git server's CGI parsing. (The checks themselves run in Argo CD's Lua VM
in tests/e2e/test_gitops_health.py.)"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from devcluster import build, flux, gitops
from flowrun import api
from scripts import argocd_snippet, generate


def test_the_argocd_cm_snippet_and_its_copy_in_the_docs_are_up_to_date() -> None:
    stale = set(generate.stale_files()) & set(argocd_snippet.files())
    assert not stale, f"out of date: {stale}; run scripts/generate"


def test_the_snippet_carries_each_check_as_written_under_argo_cds_key() -> None:
    snippet = yaml.safe_load(argocd_snippet.SNIPPET.read_text())
    assert snippet["metadata"]["labels"]["app.kubernetes.io/part-of"] == "argocd", "Argo CD reads only those"
    expected = {
        f"resource.customizations.health.{api.GROUP}_{kind}": (argocd_snippet.CHECKS / kind / "health.lua").read_text()
        for kind in (api.KIND, api.FLOW_KIND, api.CRON_KIND)
    }
    assert snippet["data"] == expected
    for doc in (argocd_snippet.INSTALL_DOC, argocd_snippet.CHART_README):
        assert argocd_snippet.SNIPPET.read_text() in doc.read_text(), doc


@pytest.mark.parametrize("kind", [api.KIND, api.FLOW_KIND, api.CRON_KIND])
def test_each_check_has_tests_on_objects_of_its_kind(kind: str) -> None:
    folder = gitops.ARGOCD_CHECKS / api.GROUP / kind
    tests = yaml.safe_load((folder / "health_test.yaml").read_text())["tests"]
    inputs = {test["inputPath"] for test in tests}
    assert inputs == {f"testdata/{path.name}" for path in (folder / "testdata").glob("*.yaml")}, "every file, once"
    for test in tests:
        assert set(test) == {"healthStatus", "inputPath"} and set(test["healthStatus"]) == {"status", "message"}
        obj = yaml.safe_load((folder / test["inputPath"]).read_text())
        assert (obj["apiVersion"], obj["kind"]) == (api.API_VERSION, kind), test["inputPath"]


def test_the_checks_use_no_library_argocd_cm_leaves_closed() -> None:
    # Scripts from argocd-cm run with only base, table and a safe os open; string, math, io and
    # the others are nil there (method calls on strings included).
    for script in gitops.ARGOCD_CHECKS.rglob("health.lua"):
        code = "\n".join(line for line in script.read_text().splitlines() if not line.lstrip().startswith("--"))
        assert not re.search(r"\b(string|math|io|debug|coroutine|channel)\.", code), script
        assert not re.search(r"[\w)\]]:\w+\(", code), f"{script}: a method call (string methods are closed)"


@pytest.mark.parametrize(
    ("module", "requires"),
    [
        (gitops.KSTATUS, "sigs.k8s.io/cli-utils v0.37.2"),
        (gitops.ARGOCD, "github.com/argoproj/argo-cd/v3 v3.2.12"),
        (gitops.FLUX, "github.com/fluxcd/source-controller v1.9.6"),
        (gitops.FLUX, "github.com/fluxcd/kustomize-controller v1.9.6"),
    ],
)
def test_each_tool_is_pinned_with_its_checksums(module: build.GoModule, requires: str) -> None:
    go_mod = (module.source / "go.mod").read_text()
    assert f"\t{requires}\n" in go_mod or f"require {requires}\n" in go_mod, requires
    path, version = requires.split()
    assert f"{path} {version} h1:" in (module.source / "go.sum").read_text()


def test_none_of_the_tools_is_built_by_devcluster_build() -> None:
    assert not {m.directory for m in gitops.TOOLS} & {m.directory for m in build.MODULES}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            b"Content-Type: application/x-git-upload-pack-advertisement\r\nCache-Control: no-cache\r\n\r\n001e# body",
            (
                200,
                [("Content-Type", "application/x-git-upload-pack-advertisement"), ("Cache-Control", "no-cache")],
                b"001e# body",
            ),
        ),
        (
            b"Status: 404 Not Found\nContent-Type: text/plain\n\nnot found\n",
            (404, [("Content-Type", "text/plain")], b"not found\n"),
        ),
        (b"Status: 403 Forbidden\r\n\r\n", (403, [], b"")),
        (b"", (200, [], b"")),
    ],
)
def test_what_git_http_backend_prints_is_split_into_status_headers_and_body(
    raw: bytes, expected: tuple[int, list[tuple[str, str]], bytes]
) -> None:
    assert flux._cgi_response(raw) == expected


def test_flux_crds_are_waited_for_by_the_names_their_files_give() -> None:
    path = Path("config/crd/bases/source.toolkit.fluxcd.io_gitrepositories.yaml")
    assert flux.crd_name(path) == "gitrepositories.source.toolkit.fluxcd.io"
